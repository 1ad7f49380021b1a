'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { App } = require('..');
const { fetchApp } = require('./helpers');

async function probe(options, path, headers, fn, method = 'GET', body) {
  const app = new App(options);
  app.use((ctx) => { ctx.body = fn(ctx); });
  const r = await fetchApp(app, method, path, headers, body);
  assert.strictEqual(r.status, 200, r.body);
  return JSON.parse(r.body);
}

test('url parts: path, query, querystring, search, href, origin, URL, originalUrl', async () => {
  const r = await probe({}, '/a/b?x=1&x=2&y=%20z', { host: 'example.com:8080' }, (ctx) => ({
    path: ctx.path, query: ctx.query, qs: ctx.querystring, search: ctx.search, url: ctx.url,
    href: ctx.href, origin: ctx.origin, URL: ctx.URL.searchParams.get('y'), originalUrl: ctx.originalUrl,
    same: ctx.query === ctx.query,
  }));
  assert.deepStrictEqual(r, {
    path: '/a/b', query: { x: ['1', '2'], y: ' z' }, qs: 'x=1&x=2&y=%20z', search: '?x=1&x=2&y=%20z',
    url: '/a/b?x=1&x=2&y=%20z', href: 'http://example.com:8080/a/b?x=1&x=2&y=%20z',
    origin: 'http://example.com:8080', URL: ' z', originalUrl: '/a/b?x=1&x=2&y=%20z', same: true,
  });
});

test('setters: path, query, querystring, search, url, method keep originalUrl', async () => {
  const r = await probe({}, '/old?a=1', {}, (ctx) => {
    const out = {};
    ctx.path = '/new';
    out.afterPath = ctx.url;
    ctx.query = { b: [2, 3] };
    out.afterQuery = ctx.url;
    ctx.querystring = 'c=4';
    out.afterQs = ctx.url;
    ctx.search = '?d=5';
    out.afterSearch = [ctx.url, ctx.query];
    ctx.url = '/x';
    ctx.method = 'PUT';
    out.final = [ctx.url, ctx.path, ctx.method, ctx.originalUrl, ctx.querystring, ctx.search];
    return out;
  });
  assert.deepStrictEqual(r, {
    afterPath: '/new?a=1', afterQuery: '/new?b=2&b=3', afterQs: '/new?c=4',
    afterSearch: ['/new?d=5', { d: '5' }], final: ['/x', '/x', 'PUT', '/old?a=1', '', ''],
  });
});

test('host, hostname, protocol, secure, subdomains without proxy', async () => {
  const r = await probe({}, '/', { host: 'a.b.example.com:81', 'x-forwarded-host': 'evil.com', 'x-forwarded-proto': 'https' }, (ctx) => ({
    host: ctx.host, hostname: ctx.hostname, protocol: ctx.protocol, secure: ctx.secure,
    subdomains: ctx.subdomains, ips: ctx.ips, ip: ctx.ip,
  }));
  assert.deepStrictEqual(r, {
    host: 'a.b.example.com:81', hostname: 'a.b.example.com', protocol: 'http', secure: false,
    subdomains: ['b', 'a'], ips: [], ip: '127.0.0.1',
  });
});

test('proxy: X-Forwarded-Host/Proto/For, maxIpsCount, proxyIpHeader', async () => {
  const headers = { host: 'inner', 'x-forwarded-host': 'outer.example.com, other', 'x-forwarded-proto': 'https, http', 'x-forwarded-for': '1.1.1.1, 2.2.2.2, 3.3.3.3', 'x-real-ip': '9.9.9.9' };
  let r = await probe({ proxy: true }, '/', headers, (ctx) => ({ host: ctx.host, protocol: ctx.protocol, secure: ctx.secure, ips: ctx.ips, ip: ctx.ip, href: ctx.href }));
  assert.deepStrictEqual(r, { host: 'outer.example.com', protocol: 'https', secure: true, ips: ['1.1.1.1', '2.2.2.2', '3.3.3.3'], ip: '1.1.1.1', href: 'https://outer.example.com/' });
  r = await probe({ proxy: true, maxIpsCount: 2 }, '/', headers, (ctx) => ({ ips: ctx.ips, ip: ctx.ip }));
  assert.deepStrictEqual(r, { ips: ['2.2.2.2', '3.3.3.3'], ip: '2.2.2.2' });
  r = await probe({ proxy: true, proxyIpHeader: 'X-Real-IP' }, '/', headers, (ctx) => ({ ip: ctx.ip }));
  assert.deepStrictEqual(r, { ip: '9.9.9.9' });
  r = await probe({}, '/', { host: '[::1]:3000' }, (ctx) => ({ hostname: ctx.hostname, subdomains: ctx.subdomains }));
  assert.deepStrictEqual(r, { hostname: '[::1]', subdomains: [] });
});

test('ctx.request.ip can be overridden', async () => {
  const r = await probe({}, '/', {}, (ctx) => { ctx.request.ip = '5.5.5.5'; return { ip: ctx.ip }; });
  assert.strictEqual(r.ip, '5.5.5.5');
});

test('headers, get(), Referrer alias, idempotent, socket, length, type, charset', async () => {
  const r = await probe({}, '/', { 'x-a': 'b', referer: '/from', 'content-type': 'Application/JSON; charset=UTF-8', 'content-length': '2' }, (ctx) => ({
    h: ctx.headers['x-a'], h2: ctx.header['x-a'], get: ctx.get('X-A'), missing: ctx.get('X-None'),
    ref: ctx.get('Referrer'), ref2: ctx.get('referer'), idem: ctx.idempotent, socket: ctx.socket === ctx.req.socket,
    len: ctx.request.length, type: ctx.request.type, charset: ctx.request.charset,
  }), 'POST', '{}');
  assert.deepStrictEqual(r, { h: 'b', h2: 'b', get: 'b', missing: '', ref: '/from', ref2: '/from', idem: false, socket: true, len: 2, type: 'application/json', charset: 'utf-8' });
});

test('is(): type-is semantics', async () => {
  const check = (ct, fn) => probe({}, '/', { 'content-type': ct, 'content-length': '1' }, fn, 'POST', 'x');
  const r = await check('application/json; charset=utf-8', (ctx) => ({
    none: ctx.is(), json: ctx.is('json'), list: ctx.is(['html', 'json']), star: ctx.is('application/*'),
    suffix: ctx.is('+json'), no: ctx.is('html'), mime: ctx.is('application/json'),
  }));
  assert.deepStrictEqual(r, { none: 'application/json', json: 'json', list: 'json', star: 'application/json', suffix: false, no: false, mime: 'application/json' });
  const f = await check('application/x-www-form-urlencoded', (ctx) => ({ form: ctx.is('urlencoded'), multipart: ctx.is('multipart') }));
  assert.deepStrictEqual(f, { form: 'urlencoded', multipart: false });
  const m = await check('multipart/form-data; boundary=x', (ctx) => ({ multipart: ctx.is('multipart') }));
  assert.deepStrictEqual(m, { multipart: 'multipart' });
  const nobody = await probe({}, '/', {}, (ctx) => ({ is: ctx.is('json') }));
  assert.deepStrictEqual(nobody, { is: null });
});

test('accepts / acceptsEncodings / acceptsCharsets / acceptsLanguages', async () => {
  const r = await probe({}, '/', {
    accept: 'text/html;q=0.8, application/json, */*;q=0.1',
    'accept-encoding': 'gzip;q=0.5, br',
    'accept-charset': 'utf-8, iso-8859-1;q=0.2',
    'accept-language': 'en-US, fr;q=0.5',
  }, (ctx) => ({
    types: ctx.accepts(), best: ctx.accepts('html', 'json'), arr: ctx.accepts(['text/html', 'image/png']),
    png: ctx.accepts('png'), enc: ctx.acceptsEncodings('gzip', 'br'), encs: ctx.acceptsEncodings(),
    cs: ctx.acceptsCharsets('iso-8859-1', 'utf-8'), lang: ctx.acceptsLanguages('fr', 'en'), langs: ctx.acceptsLanguages(),
    none: ctx.acceptsLanguages('de'),
  }));
  assert.deepStrictEqual(r, {
    types: ['application/json', 'text/html', '*/*'], best: 'json', arr: 'text/html', png: 'png',
    enc: 'br', encs: ['br', 'gzip', 'identity'], cs: 'utf-8', lang: 'en', langs: ['en-us', 'fr'], none: false,
  });
  const bare = await probe({}, '/', {}, (ctx) => ({ t: ctx.accepts('json', 'html'), e: ctx.acceptsEncodings('gzip', 'identity') }));
  assert.deepStrictEqual(bare, { t: 'json', e: 'identity' });
  const nope = await probe({}, '/', { accept: 'image/*' }, (ctx) => ({ t: ctx.accepts('json') }));
  assert.deepStrictEqual(nope, { t: false });
});

test('fresh/stale only for GET/HEAD with 2xx/304', async () => {
  const r = await probe({}, '/', { 'if-none-match': '"e"' }, (ctx) => {
    ctx.set('ETag', '"e"');
    ctx.status = 200;
    const fresh200 = ctx.fresh;
    ctx.status = 400;
    const fresh400 = ctx.fresh;
    ctx.status = 200;
    return { fresh200, fresh400, stale: ctx.stale };
  });
  assert.deepStrictEqual(r, { fresh200: true, fresh400: false, stale: false });
  const post = await probe({}, '/', { 'if-none-match': '"e"' }, (ctx) => { ctx.set('ETag', '"e"'); ctx.status = 200; return { fresh: ctx.fresh }; }, 'POST');
  assert.deepStrictEqual(post, { fresh: false });
});
