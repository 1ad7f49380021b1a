// Handlers that misbehave, one per path. Every answer names the environment
// (threadId changes when an environment is replaced).
const http = require('http');
const { threadId } = require('worker_threads');
const server = http.createServer((req, res) => {
  switch (req.url) {
    case '/throw':
      throw new Error('thrown by /throw');
    case '/reject':
      return Promise.reject(new Error('rejected by /reject'));
    case '/loop':
      for (;;) {}
    case '/alloc': {
      const keep = [];
      for (;;) keep.push(new Array(1 << 16).fill(keep.length));
    }
    case '/uncaught':
      setTimeout(() => { throw new Error('uncaught outside any request'); }, 1);
      res.end('scheduled');
      return;
    case '/slow-body': {
      let n = 0;
      req.on('data', (c) => { n += c.length; });
      req.on('end', () => res.end(`got ${n}`));
      req.on('aborted', () => console.log('slow-body aborted'));
      return;
    }
    case '/big': {
      res.on('close', () => console.log(`big closed finished=${res.writableFinished}`));
      const chunk = Buffer.alloc(64 * 1024, 120);
      let sent = 0;
      const pump = () => {
        while (sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) { res.once('drain', pump); return; }
        }
        res.end();
      };
      pump();
      return;
    }
    default:
      res.end(`alive ${threadId}`);
  }
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('LISTENING'));
