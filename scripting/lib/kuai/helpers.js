'use strict';

// Small HTTP helpers shared by request.js and response.js: media types,
// content negotiation (Accept*), conditional-request freshness, Vary,
// Content-Disposition, URL encoding for Location, HTML escaping. All
// written for kuai; semantics follow the npm packages Koa uses (mime-types,
// negotiator, fresh, vary, content-disposition, encodeurl, escape-html).

const path = require('path');

// --- media types ---------------------------------------------------------

// Extension -> media type. The common web types; `type = 'foo/bar'` works
// for anything else.
const kTypes = Object.assign(Object.create(null), {
  html: 'text/html', htm: 'text/html', shtml: 'text/html',
  txt: 'text/plain', text: 'text/plain', conf: 'text/plain', log: 'text/plain', ini: 'text/plain',
  css: 'text/css', csv: 'text/csv', md: 'text/markdown', markdown: 'text/markdown',
  js: 'text/javascript', mjs: 'text/javascript', cjs: 'application/node',
  json: 'application/json', map: 'application/json', jsonld: 'application/ld+json',
  xml: 'application/xml', xsl: 'application/xml', rss: 'application/rss+xml', atom: 'application/atom+xml',
  bin: 'application/octet-stream', exe: 'application/octet-stream', dll: 'application/octet-stream',
  pdf: 'application/pdf', zip: 'application/zip', gz: 'application/gzip', tar: 'application/x-tar',
  wasm: 'application/wasm', form: 'application/x-www-form-urlencoded',
  urlencoded: 'application/x-www-form-urlencoded', multipart: 'multipart/form-data',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  svg: 'image/svg+xml', ico: 'image/vnd.microsoft.icon', bmp: 'image/bmp', avif: 'image/avif',
  tif: 'image/tiff', tiff: 'image/tiff',
  mp3: 'audio/mpeg', wav: 'audio/wav', ogg: 'audio/ogg', oga: 'audio/ogg', weba: 'audio/webm',
  mp4: 'video/mp4', webm: 'video/webm', ogv: 'video/ogg', mpeg: 'video/mpeg',
  woff: 'font/woff', woff2: 'font/woff2', ttf: 'font/ttf', otf: 'font/otf',
  ics: 'text/calendar', vtt: 'text/vtt', yaml: 'text/yaml', yml: 'text/yaml',
  webmanifest: 'application/manifest+json', doc: 'application/msword',
});
// `form` and `urlencoded`/`multipart` are only shorthands for is()/type-is.
const kNotExtensions = new Set(['form', 'urlencoded', 'multipart']);

// Media types that carry a default charset besides text/*.
const kUtf8Types = new Set([
  'application/json', 'application/javascript', 'application/ld+json', 'application/manifest+json',
]);

// Extension or file name ("json", ".json", "a/b.json") -> media type or undefined.
function lookupType(value) {
  if (typeof value !== 'string' || !value) return undefined;
  const ext = path.extname('x.' + value).slice(1).toLowerCase();
  if (kNotExtensions.has(ext)) return undefined;
  return kTypes[ext];
}

// The Content-Type for `response.type = value`, with charset; false if unknown.
const contentTypeCache = new Map();
function contentType(value) {
  let type = contentTypeCache.get(value);
  if (type !== undefined) return type;
  type = value.indexOf('/') === -1 ? lookupType(value) : value;
  if (!type) {
    type = false;
  } else if (!/;\s*charset=/i.test(type)) {
    const bare = type.split(';', 1)[0].trim().toLowerCase();
    if (bare.startsWith('text/') || kUtf8Types.has(bare)) type += '; charset=utf-8';
  }
  if (contentTypeCache.size < 100) contentTypeCache.set(value, type);
  return type;
}

// "text/html; charset=utf-8" -> "text/html".
function bareType(header) {
  if (!header) return '';
  const semi = header.indexOf(';');
  return (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
}

// type-is: does media type `actual` match one of `types`? Shorthands:
// extensions ("json"), "urlencoded", "multipart", "+json", wildcards.
function normalizeType(type) {
  if (type === 'urlencoded') return 'application/x-www-form-urlencoded';
  if (type === 'multipart') return 'multipart/*';
  if (type[0] === '+') return '*/*' + type;
  return type.indexOf('/') === -1 ? lookupType(type) : type;
}

function mimeMatch(expected, actual) {
  if (!expected) return false;
  const e = expected.split('/');
  const a = actual.split('/');
  if (e.length !== 2 || a.length !== 2) return false;
  if (e[0] !== '*' && e[0] !== a[0]) return false;
  if (e[1].startsWith('*+')) return e[1].length <= a[1].length + 1 && e[1].slice(1) === a[1].slice(a[1].length - (e[1].length - 1));
  return e[1] === '*' || e[1] === a[1];
}

function typeIs(header, types) {
  const actual = bareType(header);
  if (!actual || !/^[!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+$/.test(actual)) return false;
  if (!types || types.length === 0) return actual;
  for (const type of types) {
    if (typeof type !== 'string') continue;
    if (mimeMatch(normalizeType(type), actual)) {
      return type[0] === '+' || type.indexOf('*') !== -1 ? actual : type;
    }
  }
  return false;
}

// --- negotiation ---------------------------------------------------------

function splitList(header) {
  const out = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header.charCodeAt(i);
    if (c === 0x22) quoted = !quoted;
    else if (c === 0x2c && !quoted) { out.push(header.slice(start, i)); start = i + 1; }
  }
  out.push(header.slice(start));
  return out;
}

// Accept -> [{ type, subtype, params, q, order }]
function parseAccept(header) {
  const out = [];
  const items = splitList(header);
  for (let i = 0; i < items.length; i++) {
    const parts = items[i].split(';');
    const full = parts[0].trim().toLowerCase();
    const slash = full.indexOf('/');
    if (slash <= 0) continue;
    const entry = { type: full.slice(0, slash), subtype: full.slice(slash + 1), params: {}, q: 1, order: i };
    for (let j = 1; j < parts.length; j++) {
      const eq = parts[j].indexOf('=');
      if (eq === -1) continue;
      const key = parts[j].slice(0, eq).trim().toLowerCase();
      let val = parts[j].slice(eq + 1).trim();
      if (val[0] === '"') val = val.slice(1, -1);
      if (key === 'q') entry.q = parseFloat(val);
      else entry.params[key] = val;
    }
    if (!Number.isNaN(entry.q)) out.push(entry);
  }
  return out;
}

function mediaSpecificity(offer, accept) {
  const slash = offer.indexOf('/');
  const type = offer.slice(0, slash).toLowerCase();
  const subtype = offer.slice(slash + 1).split(';', 1)[0].trim().toLowerCase();
  let s = 0;
  if (accept.type === type) s |= 4; else if (accept.type !== '*') return -1;
  if (accept.subtype === subtype) s |= 2; else if (accept.subtype !== '*') return -1;
  const keys = Object.keys(accept.params);
  if (keys.length > 0) {
    const offerParams = parseAccept(offer)[0];
    for (const k of keys) {
      if (!offerParams || String(offerParams.params[k]).toLowerCase() !== String(accept.params[k]).toLowerCase()) return -1;
    }
    s |= 1;
  }
  return s;
}

// Ranks `offers` (strings) against parsed accept entries; returns the
// acceptable offers best first. `specificity(offer, entry)` -> -1 or rank.
function rank(offers, entries, specificity) {
  const ranked = [];
  for (let i = 0; i < offers.length; i++) {
    let best = null;
    for (const entry of entries) {
      const s = specificity(offers[i], entry);
      if (s < 0) continue;
      if (!best || best.s < s || (best.s === s && (best.q < entry.q || (best.q === entry.q && best.o > entry.order)))) {
        best = { s, q: entry.q, o: entry.order };
      }
    }
    if (best && best.q > 0) ranked.push({ offer: offers[i], q: best.q, s: best.s, o: best.o, i });
  }
  ranked.sort((a, b) => (b.q - a.q) || (b.s - a.s) || (a.o - b.o) || (a.i - b.i));
  return ranked.map((r) => r.offer);
}

function flatOffers(args) {
  return args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
}

// accepts(...types): best type (as given) or false; no args: accepted types.
function acceptsTypes(header, args) {
  const offers = flatOffers(args);
  const entries = parseAccept(header === undefined ? '*/*' : header);
  if (offers.length === 0) {
    return entries.filter((e) => e.q > 0).sort((a, b) => (b.q - a.q) || (a.order - b.order))
      .map((e) => e.type + '/' + e.subtype);
  }
  if (header === undefined) return offers[0];
  const mimes = offers.map((o) => (typeof o === 'string' && o.indexOf('/') === -1 ? lookupType(o) : o));
  const valid = [];
  const back = new Map();
  for (let i = 0; i < mimes.length; i++) {
    if (mimes[i] && !back.has(mimes[i])) { valid.push(mimes[i]); back.set(mimes[i], offers[i]); }
  }
  const best = rank(valid, entries, mediaSpecificity)[0];
  return best ? back.get(best) : false;
}

// Accept-Charset / Accept-Encoding / Accept-Language entries.
function parseTokens(header) {
  const out = [];
  const items = splitList(header);
  for (let i = 0; i < items.length; i++) {
    const parts = items[i].split(';');
    const token = parts[0].trim().toLowerCase();
    if (!token) continue;
    let q = 1;
    for (let j = 1; j < parts.length; j++) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(parts[j]);
      if (m) q = parseFloat(m[1]);
    }
    out.push({ token, q, order: i });
  }
  return out;
}

function tokenSpecificity(offer, entry) {
  const o = offer.toLowerCase();
  if (entry.token === o) return 2;
  if (entry.token === '*') return 0;
  return -1;
}

function languageSpecificity(offer, entry) {
  const o = offer.toLowerCase();
  if (entry.token === o) return 4;
  if (entry.token === '*') return 0;
  if (o.split('-', 1)[0] === entry.token) return 2; // offer en-US for Accept en
  if (entry.token.split('-', 1)[0] === o) return 1; // offer en for Accept en-US
  return -1;
}

function acceptsTokens(header, args, kind) {
  const offers = flatOffers(args);
  let entries;
  if (kind === 'encoding') {
    entries = parseTokens(header || '');
    if (!entries.some((e) => e.token === 'identity' || e.token === '*')) {
      const minQ = entries.reduce((m, e) => Math.min(m, e.q), 1);
      entries.push({ token: 'identity', q: minQ, order: entries.length });
    }
  } else {
    entries = parseTokens(header === undefined ? '*' : header);
  }
  if (offers.length === 0) {
    return entries.filter((e) => e.q > 0 && e.token !== '*').sort((a, b) => (b.q - a.q) || (a.order - b.order))
      .map((e) => e.token);
  }
  const spec = kind === 'language' ? languageSpecificity : tokenSpecificity;
  return rank(offers, entries, spec)[0] || false;
}

// --- conditional requests ------------------------------------------------

const kNoCache = /(?:^|,)\s*?no-cache\s*?(?:,|$)/;

// fresh: true when the client's cached copy (If-None-Match /
// If-Modified-Since) is still valid for these response headers.
function isFresh(reqHeaders, resHeaders) {
  const noneMatch = reqHeaders['if-none-match'];
  const modifiedSince = reqHeaders['if-modified-since'];
  if (!noneMatch && !modifiedSince) return false;
  const cacheControl = reqHeaders['cache-control'];
  if (cacheControl && kNoCache.test(cacheControl)) return false;
  if (noneMatch && noneMatch !== '*') {
    const etag = resHeaders.etag;
    if (!etag) return false;
    let matched = false;
    for (const raw of noneMatch.split(',')) {
      const tag = raw.trim();
      if (tag === etag || tag === 'W/' + etag || 'W/' + tag === etag) { matched = true; break; }
    }
    if (!matched) return false;
  }
  if (modifiedSince) {
    const lastModified = resHeaders['last-modified'];
    if (!lastModified || !(Date.parse(lastModified) <= Date.parse(modifiedSince))) return false;
  }
  return true;
}

// --- Vary ----------------------------------------------------------------

// Returns the new Vary value with `field` (string or list) appended.
function appendVary(current, field) {
  const fields = Array.isArray(field) ? field : String(field).split(',');
  let value = current ? (Array.isArray(current) ? current.join(', ') : String(current)) : '';
  if (value.trim() === '*') return '*';
  const seen = new Set(value ? value.split(',').map((f) => f.trim().toLowerCase()) : []);
  for (const raw of fields) {
    const f = raw.trim();
    if (!f) continue;
    if (f === '*') return '*';
    if (seen.has(f.toLowerCase())) continue;
    seen.add(f.toLowerCase());
    value = value ? value + ', ' + f : f;
  }
  return value;
}

// --- Content-Disposition -------------------------------------------------

const kLatin1Printable = /^[\x20-\x7e\xa0-\xff]*$/;
const kHexEscape = /%[0-9A-Fa-f]{2}/;

function quote(value) {
  return '"' + value.replace(/[\\"]/g, '\\$&') + '"';
}

function extValue(value) {
  return "UTF-8''" + encodeURIComponent(value)
    .replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function contentDisposition(filename, options) {
  const type = (options && options.type) || 'attachment';
  if (filename === undefined) return type;
  const fallback = options && options.fallback !== undefined ? options.fallback : true;
  const name = path.basename(String(filename));
  let header = type;
  const needsExt = !kLatin1Printable.test(name) || kHexEscape.test(name);
  let plain = name;
  if (needsExt) {
    if (typeof fallback === 'string') plain = path.basename(fallback);
    else if (fallback) plain = name.replace(/[^\x20-\x7e\xa0-\xff]/g, '?');
    else plain = null;
    if (plain === name && !kHexEscape.test(name)) plain = name;
  }
  if (plain !== null) header += '; filename=' + quote(plain);
  if (needsExt) header += '; filename*=' + extValue(name);
  return header;
}

// --- URLs and HTML -------------------------------------------------------

// Percent-encodes what may not appear in a URL, keeping existing escapes.
const kUnsafeUrl = /(?:[^\x21\x23-\x3B\x3D\x3F-\x5B\x5D\x5F\x61-\x7A\x7E]|%(?:[^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|$))+/g;
const kLoneSurrogate = /(^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]|[\uD800-\uDBFF]([^\uDC00-\uDFFF]|$)/g;

function encodeUrl(url) {
  return String(url)
    .replace(kLoneSurrogate, '$1\uFFFD$2')
    .replace(kUnsafeUrl, (s) => encodeURI(s).replace(/%(?![0-9A-Fa-f]{2})/g, '%25'));
}

const kHtmlEscapes = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => kHtmlEscapes[c]);
}

module.exports = {
  lookupType, contentType, bareType, typeIs,
  acceptsTypes, acceptsTokens,
  isFresh, appendVary, contentDisposition, encodeUrl, escapeHtml,
};
