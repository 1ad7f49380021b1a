// h2-js-hello with Deno's own server API over TLS (h2 and http/1.1 by ALPN).
Deno.serve({
  hostname: Deno.env.get('HOST') || '127.0.0.1',
  port: Number(Deno.env.get('PORT')),
  cert: Deno.readTextFileSync(Deno.env.get('TLS_CERT')),
  key: Deno.readTextFileSync(Deno.env.get('TLS_KEY')),
  onListen: () => {},
}, () => new Response('Hello, World!'));
