// js-json with Deno's own server API (deno run -A json-deno.js).
Deno.serve({
  hostname: Deno.env.get('HOST') || '127.0.0.1',
  port: Number(Deno.env.get('PORT')),
  onListen: () => {},
}, () => new Response(JSON.stringify({ message: 'Hello, World!' }),
                      { headers: { 'content-type': 'application/json' } }));
