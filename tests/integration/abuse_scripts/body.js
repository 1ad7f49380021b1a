// Request bodies with backpressure: /slow-reader pauses the request, then
// hashes every byte; /ignore answers without reading (the rest is drained).
const http = require('http');
const crypto = require('crypto');
http.createServer((req, res) => {
  if (req.url === '/slow-reader') {
    const hash = crypto.createHash('sha256');
    let n = 0;
    req.pause();
    setTimeout(() => {
      req.on('data', (c) => {
        n += c.length;
        hash.update(c);
        if (n % (64 * 1024) < c.length) {  // stall now and then
          req.pause();
          setTimeout(() => req.resume(), 5);
        }
      });
      req.on('end', () => res.end(`${n} ${hash.digest('hex')}`));
      req.resume();
    }, 300);
    return;
  }
  if (req.url === '/ignore') {
    res.end('ignored');
    return;
  }
  res.end('ok');
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('LISTENING'));
