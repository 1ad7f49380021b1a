// fetch-hello: one fetch-style module (export default { fetch }) served by
// `kuai --threads 1 fetch-hello.mjs`, `deno serve` and Bun, unchanged.
export default {
  port: Number(process.env.PORT),
  hostname: process.env.HOST || '127.0.0.1',
  fetch: () => new Response('Hello, World!'),
};
