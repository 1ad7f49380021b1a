// js-json with Bun's own server API (bun json-bun.js).
Bun.serve({
  hostname: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT),
  fetch: () => new Response(JSON.stringify({ message: 'Hello, World!' }),
                            { headers: { 'content-type': 'application/json' } }),
});
