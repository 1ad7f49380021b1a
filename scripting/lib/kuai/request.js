'use strict';

// The prototype of `ctx.request` (Koa's Request): a view over Node's
// IncomingMessage (`this.req`). One object per request made with
// Object.create(app.request); everything here is a prototype accessor,
// parsed values (URL parts, query, ip) are cached on the instance on
// first use.

const net = require('net');
const qs = require('querystring');
const util = require('util');
const { acceptsTypes, acceptsTokens, bareType, typeIs, isFresh } = require('./helpers');

const kParsed = Symbol('kuai.parsedUrl');
const kQuery = Symbol('kuai.query');
const kIp = Symbol('kuai.ip');
const kURL = Symbol('kuai.URL');
const kAccept = Symbol('kuai.accept');

const kIdempotent = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);

// Splits req.url into pathname/search without allocating a URL object;
// cached per url string.
function parsedUrl(request) {
  const url = request.req.url;
  let parsed = request[kParsed];
  if (parsed !== undefined && parsed.url === url) return parsed;
  let end = url.indexOf('#');
  if (end === -1) end = url.length;
  const q = url.indexOf('?');
  if (q !== -1 && q < end) {
    parsed = { url, pathname: url.slice(0, q), query: url.slice(q + 1, end) };
  } else {
    parsed = { url, pathname: url.slice(0, end), query: '' };
  }
  // Absolute-form request targets ("http://host/path").
  if (parsed.pathname[0] !== '/' && /^[a-z][a-z0-9+.-]*:\/\//i.test(parsed.pathname)) {
    const slash = parsed.pathname.indexOf('/', parsed.pathname.indexOf('//') + 2);
    parsed.pathname = slash === -1 ? '/' : parsed.pathname.slice(slash);
  }
  request[kParsed] = parsed;
  return parsed;
}

function firstOf(value) {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string') return '';
  const comma = value.indexOf(',');
  return (comma === -1 ? value : value.slice(0, comma)).trim();
}

const request = {
  get header() { return this.req.headers; },
  set header(val) { this.req.headers = val; },
  get headers() { return this.req.headers; },
  set headers(val) { this.req.headers = val; },

  get url() { return this.req.url; },
  set url(val) { this.req.url = val; },

  get origin() { return `${this.protocol}://${this.host}`; },

  get href() {
    if (/^https?:\/\//i.test(this.originalUrl)) return this.originalUrl;
    return this.origin + this.originalUrl;
  },

  get method() { return this.req.method; },
  set method(val) { this.req.method = val; },

  get path() { return parsedUrl(this).pathname; },
  set path(path) {
    const parsed = parsedUrl(this);
    if (parsed.pathname === path) return;
    const hash = this.req.url.indexOf('#');
    this.url = path + (parsed.query ? '?' + parsed.query : '') + (hash === -1 ? '' : this.req.url.slice(hash));
  },

  get query() {
    const str = this.querystring;
    let cache = this[kQuery];
    if (cache === undefined || cache.str !== str) {
      cache = this[kQuery] = { str, value: qs.parse(str) };
    }
    return cache.value;
  },
  set query(obj) { this.querystring = qs.stringify(obj); },

  get querystring() {
    if (!this.req) return '';
    return parsedUrl(this).query;
  },
  set querystring(str) {
    const parsed = parsedUrl(this);
    if (parsed.query === str) return;
    this.url = parsed.pathname + '?' + str;
  },

  get search() {
    const q = this.querystring;
    return q ? '?' + q : '';
  },
  set search(str) { this.querystring = str[0] === '?' ? str.slice(1) : str; },

  get host() {
    let host = this.app.proxy && this.get('X-Forwarded-Host');
    if (!host) {
      if (this.req.httpVersionMajor >= 2) host = this.get(':authority');
      if (!host) host = this.get('Host');
    }
    if (!host) return '';
    return firstOf(host);
  },

  get hostname() {
    const host = this.host;
    if (!host) return '';
    if (host[0] === '[') {
      const end = host.indexOf(']');
      return end === -1 ? '' : host.slice(0, end + 1);
    }
    const colon = host.indexOf(':');
    return colon === -1 ? host : host.slice(0, colon);
  },

  get URL() {
    if (this[kURL] === undefined) {
      try {
        this[kURL] = new URL(`${this.origin}${this.originalUrl || ''}`);
      } catch {
        this[kURL] = Object.create(null);
      }
    }
    return this[kURL];
  },

  get fresh() {
    const method = this.method;
    const s = this.ctx.status;
    if (method !== 'GET' && method !== 'HEAD') return false;
    if ((s >= 200 && s < 300) || s === 304) return isFresh(this.header, this.response.header);
    return false;
  },
  get stale() { return !this.fresh; },
  get idempotent() { return kIdempotent.has(this.method); },

  get socket() { return this.req.socket; },

  get charset() {
    const type = this.get('Content-Type');
    if (!type) return '';
    const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(type);
    return m ? m[1].toLowerCase() : '';
  },

  get length() {
    const len = this.get('Content-Length');
    if (len === '') return undefined;
    return ~~len;
  },

  get protocol() {
    if (this.socket && this.socket.encrypted) return 'https';
    if (!this.app.proxy) return 'http';
    const proto = firstOf(this.get('X-Forwarded-Proto'));
    return proto || 'http';
  },
  get secure() { return this.protocol === 'https'; },

  get ips() {
    const proxy = this.app.proxy;
    if (!proxy) return [];
    const value = this.get(this.app.proxyIpHeader);
    if (!value) return [];
    let ips = value.split(/\s*,\s*/);
    if (this.app.maxIpsCount > 0) ips = ips.slice(-this.app.maxIpsCount);
    return ips;
  },

  get ip() {
    if (this[kIp] === undefined) {
      this[kIp] = this.ips[0] || (this.socket && this.socket.remoteAddress) || '';
    }
    return this[kIp];
  },
  set ip(val) { this[kIp] = val; },

  get subdomains() {
    const offset = this.app.subdomainOffset;
    const hostname = this.hostname;
    if (net.isIP(hostname)) return [];
    return hostname.split('.').reverse().slice(offset);
  },

  get accept() {
    if (this[kAccept] === undefined) {
      const headers = this.req.headers;
      this[kAccept] = {
        types: (...args) => acceptsTypes(headers.accept, args),
        encodings: (...args) => acceptsTokens(headers['accept-encoding'], args, 'encoding'),
        charsets: (...args) => acceptsTokens(headers['accept-charset'], args, 'charset'),
        languages: (...args) => acceptsTokens(headers['accept-language'], args, 'language'),
      };
    }
    return this[kAccept];
  },
  set accept(obj) { this[kAccept] = obj; },

  // These honour a replaced ctx.accept (as Koa's do) without creating one.
  accepts(...args) {
    const a = this[kAccept];
    return a !== undefined ? a.types(...args) : acceptsTypes(this.req.headers.accept, args);
  },
  acceptsEncodings(...args) {
    const a = this[kAccept];
    return a !== undefined ? a.encodings(...args) : acceptsTokens(this.req.headers['accept-encoding'], args, 'encoding');
  },
  acceptsCharsets(...args) {
    const a = this[kAccept];
    return a !== undefined ? a.charsets(...args) : acceptsTokens(this.req.headers['accept-charset'], args, 'charset');
  },
  acceptsLanguages(...args) {
    const a = this[kAccept];
    return a !== undefined ? a.languages(...args) : acceptsTokens(this.req.headers['accept-language'], args, 'language');
  },

  // type-is: null without a body, else the matching type or false.
  is(type, ...types) {
    const headers = this.req.headers;
    const hasBody = headers['transfer-encoding'] !== undefined || !Number.isNaN(parseInt(headers['content-length'], 10));
    if (!hasBody) return null;
    const list = type === undefined ? [] : Array.isArray(type) ? type : [type, ...types];
    return typeIs(headers['content-type'], list);
  },

  get type() { return bareType(this.get('Content-Type')); },

  get(field) {
    const headers = this.req.headers;
    const name = field.toLowerCase();
    if (name === 'referer' || name === 'referrer') return headers.referrer || headers.referer || '';
    return headers[name] || '';
  },

  inspect() {
    if (!this.req) return;
    return this.toJSON();
  },
  [util.inspect.custom]() { return this.inspect(); },

  toJSON() {
    return { method: this.method, url: this.url, header: this.header };
  },
};

module.exports = request;
