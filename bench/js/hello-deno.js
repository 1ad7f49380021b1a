// js-hello with Deno's own server API (deno run -A hello-deno.js).
Deno.serve({
  hostname: Deno.env.get('HOST') || '127.0.0.1',
  port: Number(Deno.env.get('PORT')),
  onListen: () => {},
}, () => new Response('Hello, World!'));
