'use strict';
// A reverse proxy written with npm packages: Express 5 and
// http-proxy-middleware 3 (node-http-proxy underneath), which copies the
// upstream's fields (Transfer-Encoding included) onto the response and pipes
// the bodies both ways. /up/* goes to $UPSTREAM; /own answers itself.
// Listens on $PORT at 127.0.0.1; prints "LISTENING <port>" once listening.

const express = require('express');
const { createProxyMiddleware } = require('http-proxy-middleware');

const app = express();
// (Mounted at /up: Express strips the prefix before the proxy sees the path.)
app.use('/up', createProxyMiddleware({ target: process.env.UPSTREAM }));
app.get('/own', (req, res) => res.send('own answer'));

const port = Number(process.env.PORT);
app.listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
