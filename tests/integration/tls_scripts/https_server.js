// https.createServer on kuai's TLS, with Node's crypto and Node's own https
// client (OpenSSL 3) in the same process.
const https = require('https');
const fs = require('fs');
const crypto = require('crypto');
const [, , dir, port] = process.argv;
const server = https.createServer(
  { key: fs.readFileSync(`${dir}/ecdsa.key`), cert: fs.readFileSync(`${dir}/ecdsa.pem`) },
  (req, res) => {
    if (req.url === '/self') {
      // A request from this process's Node https client to this server.
      https.get({ host: '127.0.0.1', port, path: '/', ca: fs.readFileSync(`${dir}/ca.pem`),
        servername: 'localhost' }, (r) => {
        let body = '';
        r.on('data', (d) => { body += d; });
        r.on('end', () => res.end(`inner ${r.statusCode} ${body}`));
      }).on('error', (e) => { res.statusCode = 502; res.end(e.message); });
      return;
    }
    const digest = crypto.createHash('sha256').update('kuai').digest('hex');
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ encrypted: req.socket.encrypted === true, digest }));
  });
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
