// One fetch-style module (the shape `deno serve` and Bun serve) that
// tests/integration/test_fetch.py runs under kuai, Deno and Bun: each request
// must get the same answer from all of them.
let aborted = 0;
const enc = new TextEncoder();

export default {
  async fetch(request, info) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case '/':
        return new Response('Hello, World!');
      case '/json':
        return Response.json({ message: 'Hello, World!', list: [1, 2, 3] });
      case '/json-status':
        return Response.json({ created: true }, { status: 201, headers: { 'x-made': 'yes' } });
      case '/url':
        return new Response(`${request.method} ${request.url} ${url.search}`);
      case '/echo':
        return new Response(await request.text(), {
          headers: { 'content-type': request.headers.get('content-type') || 'none' },
        });
      case '/json-echo': {
        const got = await request.json();
        return Response.json({ got, method: request.method, used: request.bodyUsed });
      }
      case '/bytes':
        return new Response(new Uint8Array([104, 105, 0, 255]), {
          headers: { 'content-type': 'application/octet-stream' },
        });
      case '/array-buffer': {
        const b = await request.arrayBuffer();
        return new Response(`${b.byteLength} ${new Uint8Array(b).reduce((a, c) => (a + c) % 65521, 0)}`);
      }
      case '/stream-body': {
        // The body as a stream, read chunk by chunk.
        const reader = request.body.getReader();
        let n = 0;
        let sum = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          n += value.byteLength;
          for (const c of value) sum = (sum + c) % 65521;
        }
        return new Response(`${n} ${sum}`);
      }
      case '/headers': {
        const h = new Headers({ 'x-seen': request.headers.get('x-rep') || 'none' });
        h.append('set-cookie', 'a=1; Path=/');
        h.append('set-cookie', 'b=2; HttpOnly');
        h.append('x-multi', 'one');
        h.append('x-multi', 'two');
        return new Response('headers', { headers: h });
      }
      case '/header-list':
        return new Response('list', { headers: [['x-a', '1'], ['X-B', '2'], ['content-type', 'text/x-list']] });
      case '/has':
        return new Response([...request.headers.keys()].filter((k) => k.startsWith('x-')).join(','));
      case '/status':
        return new Response('made', { status: 201, headers: { 'x-custom': 'value' } });
      case '/no-content':
        return new Response(null, { status: 204 });
      case '/empty':
        return new Response();
      case '/stream':
        return new Response(new ReadableStream({
          start(controller) {
            for (const part of ['one ', 'two ', 'three']) controller.enqueue(enc.encode(part));
            controller.close();
          },
        }), { headers: { 'content-type': 'text/plain' } });
      case '/slow-stream': {
        let i = 0;
        return new Response(new ReadableStream({
          async pull(controller) {
            await new Promise((r) => setTimeout(r, 5));
            if (i++ === 5) controller.close();
            else controller.enqueue(enc.encode(`part${i};`));
          },
        }));
      }
      case '/blob':
        return new Response(new Blob(['blob body'], { type: 'text/x-blob' }));
      case '/search':
        return new Response(new URLSearchParams({ a: '1', b: 'two words' }));
      case '/form': {
        const f = await request.formData();
        return Response.json(Object.fromEntries(f));
      }
      case '/redirect':
        return Response.redirect('http://example.test/elsewhere', 307);
      case '/instance':
        return Response.json({
          request: request instanceof Request,
          response: new Response('x') instanceof Response,
          json: Response.json(1) instanceof Response,
          method: typeof request.clone,
          signal: request.signal instanceof AbortSignal && !request.signal.aborted,
        });
      case '/clone': {
        const copy = request.clone();
        return new Response(`${await request.text()}|${await copy.text()}`);
      }
      case '/rewrap': {
        // A Request made from the request (what proxies and frameworks do).
        const again = new Request(request, { headers: { 'x-new': 'yes' } });
        return new Response(`${again.method} ${new URL(again.url).pathname} ${again.headers.get('x-new')} ${await again.text()}`);
      }
      case '/response-clone': {
        const r = new Response('twice', { headers: { 'x-c': '1' } });
        const c = r.clone();
        return new Response(`${await r.text()} ${await c.text()}`, { headers: c.headers });
      }
      case '/response-read': {
        const r = Response.json({ a: 1 });
        return new Response(`${r.status} ${r.ok} ${r.headers.get('content-type')} ${JSON.stringify(await r.json())}`);
      }
      case '/throw':
        throw new Error('thrown on purpose');
      case '/reject':
        await Promise.resolve();
        throw new Error('rejected on purpose');
      case '/not-a-response':
        return 'just a string';
      case '/wait':
        // Answers only once the client has gone away.
        await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
        aborted++;
        return new Response('late');
      case '/aborted':
        return new Response(String(aborted));
      case '/remote':
        return new Response(info && info.remoteAddr ? info.remoteAddr.hostname : 'none');
    }
    return new Response(`no route for ${url.pathname}`, { status: 404 });
  },
};
