'use strict';

// ctx.cookies: reads the Cookie header and writes Set-Cookie, with optional
// signatures, in the format of the `cookies` + `keygrip` npm packages (so
// cookies signed by Koa verify here and the other way round):
//
//   Set-Cookie: name=value; path=/; httponly
//   Set-Cookie: name.sig=<signature>; path=/; httponly
//
// signature = base64url(HMAC-SHA1(keys[0], "name=value")), i.e. base64
// with '/' -> '_', '+' -> '-' and '=' padding dropped. Verification tries
// every key (constant-time compare); a match with an older key re-signs
// with keys[0]. `app.keys` may also be any object with sign(data) and
// index(data, digest) (e.g. a Keygrip or Keys instance), which lets an app
// choose SHA-256.
//
// Signed is the default when app.keys is set, as in Koa.

const crypto = require('crypto');

// RFC 6265 grammar.
const kToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const kCookieValue = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/;
const kAttrValue = /^[\x20-\x3A\x3C-\x7E]+$/;
const kPriority = /^(?:low|medium|high)$/i;
const kSameSite = /^(?:lax|none|strict)$/i;

// Keygrip-compatible signer over a list of keys.
class Keys {
  constructor(keys, algorithm = 'sha1') {
    if (!Array.isArray(keys) || keys.length === 0) throw new Error('Keys must be provided.');
    this.keys = keys;
    this.algorithm = algorithm;
  }

  signWith(data, key) {
    return crypto.createHmac(this.algorithm, key).update(data).digest('base64')
      .replace(/\//g, '_').replace(/\+/g, '-').replace(/=+$/, '');
  }

  sign(data) { return this.signWith(data, this.keys[0]); }

  verify(data, digest) { return this.index(data, digest) !== -1; }

  index(data, digest) {
    const given = Buffer.from(String(digest));
    for (let i = 0; i < this.keys.length; i++) {
      const expected = Buffer.from(this.signWith(data, this.keys[i]));
      if (expected.length === given.length && crypto.timingSafeEqual(expected, given)) return i;
    }
    return -1;
  }
}

// One outgoing cookie.
class Cookie {
  constructor(name, value, attrs) {
    if (!kToken.test(name)) throw new TypeError('argument name is invalid');
    if (value && !kCookieValue.test(value)) throw new TypeError('argument value is invalid');
    this.name = name;
    this.value = value || '';
    this.path = '/';
    this.expires = undefined;
    this.domain = undefined;
    this.httpOnly = true;
    this.partitioned = false;
    this.priority = undefined;
    this.sameSite = false;
    this.secure = false;
    this.overwrite = false;
    this.maxAge = undefined;
    if (attrs) {
      for (const key of Object.keys(attrs)) {
        if (key !== 'name' && key !== 'value' && attrs[key] !== undefined) this[key] = attrs[key];
      }
    }
    if (!value) {
      this.expires = new Date(0);
      this.maxAge = null;
    }
    if (this.path && !kAttrValue.test(this.path)) throw new TypeError('option path is invalid');
    if (this.domain && !kAttrValue.test(this.domain)) throw new TypeError('option domain is invalid');
    if (typeof this.maxAge === 'number' ? Number.isNaN(this.maxAge) || !Number.isFinite(this.maxAge) : false) {
      throw new TypeError('option maxAge is invalid');
    }
    if (this.priority && !kPriority.test(this.priority)) throw new TypeError('option priority is invalid');
    if (this.sameSite && this.sameSite !== true && !kSameSite.test(this.sameSite)) {
      throw new TypeError('option sameSite is invalid');
    }
  }

  toString() { return `${this.name}=${this.value}`; }

  toHeader() {
    let header = this.toString();
    if (this.maxAge) this.expires = new Date(Date.now() + this.maxAge);
    if (this.path) header += `; path=${this.path}`;
    if (this.expires) header += `; expires=${this.expires.toUTCString()}`;
    if (this.domain) header += `; domain=${this.domain}`;
    if (this.priority) header += `; priority=${this.priority.toLowerCase()}`;
    if (this.sameSite) header += `; samesite=${this.sameSite === true ? 'strict' : this.sameSite.toLowerCase()}`;
    if (this.secure) header += '; secure';
    if (this.httpOnly) header += '; httponly';
    if (this.partitioned) header += '; partitioned';
    return header;
  }
}

// Escapes a cookie name for use in a RegExp.
const nameRegexCache = new Map();
function nameRegex(name) {
  let re = nameRegexCache.get(name);
  if (!re) {
    re = new RegExp('(?:^|;) *' + name.replace(/[-[\]{}()*+?.,\\^$|#\s]/g, '\\$&') + '=([^;]*)');
    if (nameRegexCache.size < 1000) nameRegexCache.set(name, re);
  }
  return re;
}

class Cookies {
  constructor(req, res, options) {
    this.req = req;
    this.res = res;
    this.secure = options && options.secure;
    let keys = options && options.keys;
    if (Array.isArray(keys)) keys = new Keys(keys);
    this.keys = keys || undefined;
  }

  get(name, opts) {
    const sigName = name + '.sig';
    const signed = opts && opts.signed !== undefined ? opts.signed : !!this.keys;
    const header = this.req.headers.cookie;
    if (!header) return undefined;
    const match = nameRegex(name).exec(header);
    if (!match) return undefined;
    let value = match[1];
    if (value[0] === '"') value = value.slice(1, -1);
    if (!opts || !signed) return value;
    const remote = this.get(sigName);
    if (!remote) return undefined;
    const data = name + '=' + value;
    if (!this.keys) throw new Error('.keys required for signed cookies');
    const index = this.keys.index(data, remote);
    if (index < 0) {
      this.set(sigName, null, { path: '/', signed: false });
      return undefined;
    }
    if (index > 0) this.set(sigName, this.keys.sign(data), { signed: false });
    return value;
  }

  set(name, value, opts) {
    const res = this.res;
    const req = this.req;
    const secure = this.secure !== undefined ? !!this.secure
      : req.protocol === 'https' || !!(req.socket && req.socket.encrypted);
    const cookie = new Cookie(name, value, opts);
    // As in the `cookies` package: without an options object, unsigned.
    const signed = opts ? (opts.signed !== undefined ? opts.signed : !!this.keys) : false;

    let headers = res.getHeader('Set-Cookie') || [];
    if (typeof headers === 'string') headers = [headers];
    else headers = headers.slice();

    if (!secure && opts && opts.secure) {
      throw new Error('Cannot send secure cookie over unencrypted connection');
    }
    cookie.secure = opts && opts.secure !== undefined ? opts.secure : secure;
    if (opts && 'secureProxy' in opts) cookie.secure = opts.secureProxy;

    pushCookie(headers, cookie);
    if (signed) {
      if (!this.keys) throw new Error('.keys required for signed cookies');
      cookie.value = this.keys.sign(cookie.toString());
      cookie.name += '.sig';
      pushCookie(headers, cookie);
    }

    if (!res.headersSent) res.setHeader('Set-Cookie', headers);
    return this;
  }
}

// Adds a cookie's header, replacing earlier ones of the same name when
// `overwrite` is set.
function pushCookie(headers, cookie) {
  if (cookie.overwrite) {
    const prefix = cookie.name + '=';
    for (let i = headers.length - 1; i >= 0; i--) {
      if (headers[i].startsWith(prefix)) headers.splice(i, 1);
    }
  }
  headers.push(cookie.toHeader());
}

module.exports = { Cookies, Cookie, Keys };
