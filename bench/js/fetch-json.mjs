// fetch-json: the JSON hello as a fetch-style module, served by kuai, Deno and
// Bun unchanged.
export default {
  port: Number(process.env.PORT),
  hostname: process.env.HOST || '127.0.0.1',
  fetch: () => Response.json({ message: 'Hello, World!' }),
};
