'use strict';
// An Express 5 app: params, query, JSON in and out, cookies, a streamed body,
// errors (sync, async, http-errors), redirects, ETags, 404. Listens on $PORT
// at 127.0.0.1; prints "LISTENING <port>" once listening.

const express = require('express');
const { Readable } = require('stream');

const app = express();
app.use(express.json());

app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id, query: req.query });
});

app.get('/files/*path', (req, res) => {
  res.json({ path: req.params.path });
});

app.post('/echo', (req, res) => {
  res.status(201).json({ got: req.body, type: req.get('content-type') });
});

app.get('/cookies', (req, res) => {
  res.cookie('plain', 'value', { path: '/', httpOnly: true });
  res.cookie('spaced', 'two words', { maxAge: 0 });
  res.append('X-Extra', ['one', 'two']);
  res.json({ cookie: req.get('cookie') || null });
});

app.get('/stream', (req, res) => {
  res.type('text/plain');
  Readable.from(['one\n', 'two\n', 'three\n']).pipe(res);
});

app.get('/text', (req, res) => {
  res.set('X-Custom-Header', 'Custom');
  res.send('hello from express');
});

app.get('/html', (req, res) => res.send('<p>html</p>'));

app.get('/redirect', (req, res) => res.redirect('/users/7'));

app.get('/status/:code', (req, res) => res.sendStatus(Number(req.params.code)));

app.get('/error', () => {
  throw new Error('express sync failure');
});

app.get('/async-error', async () => {
  await new Promise((r) => setTimeout(r, 5));
  throw new Error('express async failure');
});

app.get('/teapot', (req, res, next) => {
  const err = new Error('short and stout');
  err.status = 418;
  next(err);
});

app.route('/only-get').get((req, res) => res.send('only get'));

// The error handler: JSON with the status and message.
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ error: err.message });
});

const port = Number(process.env.PORT);
app.listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
