'use strict';

// The prototype of `ctx.response` (Koa's Response): a view over Node's
// ServerResponse (`this.res`) plus the body the app has set. One object per
// request made with Object.create(app.response). The body setter decides
// status and Content-Type/Length the way Koa does; application.js writes
// the body out after the middleware has finished.

const assert = require('assert');
const path = require('path');
const { Stream } = require('stream');
const util = require('util');
const { messages } = require('./errors');
const {
  contentType, bareType, typeIs, appendVary, contentDisposition, encodeUrl, escapeHtml,
} = require('./helpers');

const kEmptyStatus = new Set([204, 205, 304]);
const kRedirectStatus = new Set([300, 301, 302, 303, 305, 307, 308]);

// Per-instance state, kept under plain property names like Koa's
// (`_body`, `_explicitStatus`, `_explicitNullBody`) so middleware that peeks
// at them keeps working.

function destroyStream(stream) {
  if (typeof stream.destroy === 'function' && !stream.destroyed) stream.destroy();
}

// Node's Readable.fromWeb exists since 17; Blob since 15.7 (global in 18).
function isWebStream(val) {
  return typeof ReadableStream !== 'undefined' && val instanceof ReadableStream;
}
function isBlob(val) {
  return typeof Blob !== 'undefined' && val instanceof Blob;
}
function isFetchResponse(val) {
  return typeof Response !== 'undefined' && val instanceof Response;
}

const response = {
  get socket() { return this.res.socket; },

  get header() { return this.res.getHeaders(); },
  get headers() { return this.res.getHeaders(); },

  get status() { return this.res.statusCode; },
  set status(code) {
    if (this.headerSent) return;
    // (The message is made only for a failure: this runs for every response.)
    if (!Number.isInteger(code)) assert(false, 'status code must be a number');
    if (!(code >= 100 && code <= 999)) assert(false, `invalid status code: ${code}`);
    this._explicitStatus = true;
    this.res.statusCode = code;
    if (this.req.httpVersionMajor < 2) this.res.statusMessage = messages[code] || '';
    if (this.body && kEmptyStatus.has(code)) this.body = null;
  },

  get message() { return this.res.statusMessage || messages[this.status] || ''; },
  set message(msg) { this.res.statusMessage = msg; },

  get body() { return this._body; },
  set body(val) {
    const original = this._body;
    this._body = val;

    // no content
    if (val == null) {
      if (!kEmptyStatus.has(this.status)) {
        if (this.type === 'application/json') {
          this._body = 'null';
          return;
        }
        this.status = 204;
      }
      if (val === null) this._explicitNullBody = true;
      this.remove('Content-Type');
      this.remove('Content-Length');
      this.remove('Transfer-Encoding');
      return;
    }

    if (!this._explicitStatus) this.status = 200;
    const setType = !this.has('Content-Type');

    if (typeof val === 'string') {
      if (setType) this.type = /^\s*</.test(val) ? 'html' : 'text';
      this.length = Buffer.byteLength(val);
      return;
    }

    if (Buffer.isBuffer(val)) {
      if (setType) this.type = 'bin';
      this.length = val.length;
      return;
    }

    if (val instanceof Stream) {
      if (original !== val) {
        // The response ending (or the client leaving) ends the stream; a
        // stream error becomes the request's error.
        this.res.once('close', destroyStream.bind(null, val));
        val.once('error', (err) => {
          const ctx = this.ctx;
          ctx.onerror(err);
          // Headers (and maybe part of the body) are out: cut the response
          // short rather than leave the client waiting.
          if (ctx.res.headersSent && !ctx.res.writableEnded) ctx.res.destroy();
        });
        if (original != null) this.remove('Content-Length');
      }
      if (setType) this.type = 'bin';
      return;
    }

    if (isWebStream(val)) {
      if (setType) this.type = 'bin';
      return;
    }

    if (isBlob(val)) {
      if (setType) this.type = val.type || 'bin';
      this.length = val.size;
      return;
    }

    if (isFetchResponse(val)) {
      this.status = val.status;
      if (setType) {
        const type = val.headers.get('Content-Type');
        if (type) this.type = type;
      }
      return;
    }

    // JSON
    this.remove('Content-Length');
    this.type = 'json';
  },

  set length(n) {
    if (!this.has('Transfer-Encoding')) this.set('Content-Length', n);
  },
  get length() {
    if (this.has('Content-Length')) return parseInt(this.get('Content-Length'), 10) || 0;
    const body = this.body;
    if (body == null || body instanceof Stream) return undefined;
    if (typeof body === 'string') return Buffer.byteLength(body);
    if (Buffer.isBuffer(body)) return body.length;
    if (isBlob(body)) return body.size;
    if (isWebStream(body) || isFetchResponse(body)) return undefined;
    return Buffer.byteLength(JSON.stringify(body));
  },

  get headerSent() { return this.res.headersSent; },

  vary(field) {
    if (this.headerSent) return;
    const value = appendVary(this.res.getHeader('Vary'), field);
    if (value) this.res.setHeader('Vary', value);
  },

  // Location + 302 (unless a redirect status is set) + a short body.
  redirect(url, alt) {
    if (url === 'back') url = this.ctx.get('Referrer') || alt || '/';
    if (/^https?:\/\//i.test(url)) {
      try { url = new URL(url).toString(); } catch { /* keep as given */ }
    }
    this.set('Location', encodeUrl(url));
    if (!kRedirectStatus.has(this.status)) this.status = 302;
    if (this.ctx.accepts('html')) {
      const safe = escapeHtml(url);
      this.type = 'text/html; charset=utf-8';
      this.body = `Redirecting to ${safe}.`;
      return;
    }
    this.type = 'text/plain; charset=utf-8';
    this.body = `Redirecting to ${url}.`;
  },

  // Redirects to the Referrer (if it is this origin) or `alt` or '/'.
  back(alt) {
    const referrer = this.ctx.get('Referrer');
    let url = alt || '/';
    if (referrer) {
      if (referrer[0] === '/' && referrer[1] !== '/') {
        url = referrer;
      } else {
        try {
          const parsed = new URL(referrer);
          if (parsed.host === this.ctx.host) url = referrer;
        } catch { /* not a URL */ }
      }
    }
    this.redirect(url);
  },

  attachment(filename, options) {
    if (filename) this.type = path.extname(String(filename));
    this.set('Content-Disposition', contentDisposition(filename, options));
  },

  set type(type) {
    const value = type ? contentType(type) : false;
    if (value) this.set('Content-Type', value);
    else this.remove('Content-Type');
  },
  get type() { return bareType(this.get('Content-Type')); },

  set lastModified(val) {
    if (typeof val === 'string') val = new Date(val);
    this.set('Last-Modified', val.toUTCString());
  },
  get lastModified() {
    const date = this.get('last-modified');
    return date ? new Date(date) : undefined;
  },

  set etag(val) {
    if (!/^(W\/)?"/.test(val)) val = `"${val}"`;
    this.set('ETag', val);
  },
  get etag() { return this.get('ETag'); },

  is(type, ...types) {
    const list = type === undefined ? [] : Array.isArray(type) ? type : [type, ...types];
    return typeIs(this.get('Content-Type'), list);
  },

  get(field) {
    const value = this.res.getHeader(field);
    return value === undefined ? '' : value;
  },

  has(field) { return this.res.hasHeader(field); },

  set(field, val) {
    if (this.headerSent) return;
    if (typeof field === 'string') {
      if (Array.isArray(val)) val = val.map((v) => (typeof v === 'string' ? v : String(v)));
      else if (typeof val !== 'string') val = String(val);
      this.res.setHeader(field, val);
      return;
    }
    if (field) {
      for (const key of Object.keys(field)) this.set(key, field[key]);
    }
  },

  append(field, val) {
    const prev = this.get(field);
    if (prev) val = Array.isArray(prev) ? prev.concat(val) : [prev].concat(val);
    this.set(field, val);
  },

  remove(field) {
    if (this.headerSent) return;
    this.res.removeHeader(field);
  },

  get writable() {
    if (this.res.writableEnded || this.res.finished) return false;
    const socket = this.res.socket;
    if (!socket) return true;
    return socket.writable;
  },

  flushHeaders() { this.res.flushHeaders(); },

  inspect() {
    if (!this.res) return;
    const o = this.toJSON();
    o.body = this.body;
    return o;
  },
  [util.inspect.custom]() { return this.inspect(); },

  toJSON() {
    return { status: this.status, message: this.message, header: this.header };
  },
};

module.exports = response;
