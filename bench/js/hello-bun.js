// js-hello with Bun's own server API (bun hello-bun.js).
Bun.serve({
  hostname: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT),
  fetch: () => new Response('Hello, World!'),
});
