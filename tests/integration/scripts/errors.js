'use strict';
// A handler that throws, an async handler that rejects, and what the script
// sees of process.argv, __filename, process.env and require.main. Listens on
// $PORT at 127.0.0.1; prints "LISTENING <port>" once listening.

const http = require('http');

const port = Number(process.env.PORT);

http.createServer((req, res) => {
  if (req.url === '/throw') {
    res.setHeader('X-Set-Before-Throw', '1');
    throw new Error('kuai-test-sync-throw-marker');
  }
  if (req.url === '/reject') {
    return (async () => {
      await new Promise((r) => setTimeout(r, 10));
      throw new Error('kuai-test-async-reject-marker');
    })();
  }
  if (req.url === '/info') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({
      args: process.argv.slice(2),
      argv1: process.argv[1],
      argvLength: process.argv.length,
      filename: __filename,
      dirname: __dirname,
      env: process.env.KUAI_TEST_VAR,
      requireMainIsModule: require.main === module,
      cwd: process.cwd(),
    }));
    return;
  }
  res.end('ok');
}).listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
