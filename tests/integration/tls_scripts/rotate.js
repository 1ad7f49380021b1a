'use strict';
// server.addContext and server.setSecureContext: the server starts with
// $CERT_A/$KEY_A, plus $CERT_B/$KEY_B for the name other.test (addContext);
// once the file $ROTATE exists it takes $CERT_B/$KEY_B alone, as a
// certificate renewal would (every reactor's environment sees the file).
// GET /bad: what wrong arguments throw.
const https = require('https');
const fs = require('fs');

const pair = (c, k) => ({ cert: fs.readFileSync(process.env[c]), key: fs.readFileSync(process.env[k]) });
const server = https.createServer(pair('CERT_A', 'KEY_A'), (req, res) => {
  if (req.url === '/bad') {
    const out = [];
    const attempt = (f) => {
      try {
        f();
        out.push('accepted');
      } catch (e) {
        out.push(e.code);
      }
    };
    for (const v of ['x', null, 42]) attempt(() => server.setSecureContext(v));
    attempt(() => server.addContext('', pair('CERT_B', 'KEY_B')));
    return res.end(out.join(' '));
  }
  return res.end(`hello ${req.url}`);
});
// A connection opened before the renewal is used after it: keep it open
// however slow the machine is.
server.keepAliveTimeout = 60000;
server.addContext('other.test', pair('CERT_B', 'KEY_B'));
const timer = setInterval(() => {
  if (!fs.existsSync(process.env.ROTATE)) return;
  clearInterval(timer);
  server.setSecureContext(pair('CERT_B', 'KEY_B'));
  console.log('rotated');
}, 50);
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
