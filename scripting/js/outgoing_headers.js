'use strict';
// The outgoing-header API of Node's OutgoingMessage (setHeader, appendHeader,
// getHeader, getHeaders, getHeaderNames, getRawHeaderNames, hasHeader,
// removeHeader) with Node's checks and error codes, shared by the server's
// ServerResponse (js/http_server.js) and the client's ClientRequest
// (js/http_client.js); the same name and value checks serve fetch handlers'
// headers (js/fetch_server.js).

const kHeaders = Symbol('kuai.headers');  // [key, name, value, ...] (outgoingHeaderMethods)

const kTokenRe = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
const kInvalidValueRe = /[^\t\x20-\x7e\x80-\xff]/;

function codedError(Base, code, message) {
  const e = new Base(message);
  e.code = code;
  return e;
}

function checkName(name) {
  if (typeof name !== 'string' || !name || !kTokenRe.test(name)) {
    throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN',
      `Header name must be a valid HTTP token ["${name}"]`);
  }
}

function checkValue(name, value) {
  if (value === undefined) {
    throw codedError(TypeError, 'ERR_HTTP_INVALID_HEADER_VALUE',
      `Invalid value "${value}" for header "${name}"`);
  }
  if (Array.isArray(value)) {
    for (const v of value) checkChars(name, String(v));
  } else {
    checkChars(name, typeof value === 'string' ? value : String(value));
  }
}

function checkChars(name, text) {
  if (kInvalidValueRe.test(text)) {
    throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
  }
}

// The outgoing-header API of Node's OutgoingMessage, shared by ServerResponse
// and the client's ClientRequest (js/http_client.js). Fields live in
// this[kHeaders], one array of [lower-case key, name as given, value] triples
// in the order first set: a response has a handful, and a linear search over
// one array costs less than a dictionary object per response. Each class says
// when its head has gone out (_assertHeadersOpen).
const kKnownNames = new Map();  // a valid field name as written -> its key
const kKnownNamesMax = 1024;

// The key of a name setHeader/appendHeader accept (checked once per name).
function keyToSet(name) {
  let key = kKnownNames.get(name);
  if (key === undefined) {
    checkName(name);
    key = name.toLowerCase();
    if (kKnownNames.size < kKnownNamesMax) kKnownNames.set(name, key);
  }
  return key;
}

function keyOf(name) {
  const key = kKnownNames.get(name);
  return key === undefined ? name.toLowerCase() : key;
}

function fieldAt(list, key) {
  for (let i = 0; i < list.length; i += 3) {
    if (list[i] === key) return i;
  }
  return -1;
}

// setHeader/appendHeader's common part: the checks, then the field's index
// in the list, or -1 once a new field has been added.
function fieldToWrite(message, how, name, value) {
  message._assertHeadersOpen(how);
  const key = keyToSet(name);
  checkValue(name, value);
  const list = message[kHeaders];
  const i = fieldAt(list, key);
  if (i < 0) list.push(key, name, value);
  return i;
}

const outgoingHeaderMethods = {
  // A Headers or a Map at once, as Node: set-cookie values gathered into one
  // field (a Headers object's iteration gives each separately).
  setHeaders(headers) {
    this._assertHeadersOpen('set');
    if (!headers || Array.isArray(headers) || typeof headers.keys !== 'function' ||
        typeof headers.get !== 'function') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "headers" argument must be an instance of Headers or Map. Received ${receivedText(headers)}`);
    }
    const cookies = [];
    for (const [key, value] of headers) {
      if (key === 'set-cookie') {
        if (Array.isArray(value)) cookies.push(...value);
        else cookies.push(value);
        continue;
      }
      this.setHeader(key, value);
    }
    if (cookies.length) this.setHeader('set-cookie', cookies);
    return this;
  },
  setHeader(name, value) {
    const i = fieldToWrite(this, 'set', name, value);
    if (i >= 0) {
      const list = this[kHeaders];
      list[i + 1] = name;
      list[i + 2] = value;
    }
    return this;
  },
  appendHeader(name, value) {
    const i = fieldToWrite(this, 'append', name, value);
    if (i >= 0) {
      const list = this[kHeaders];
      const prev = list[i + 2];
      list[i + 2] = (Array.isArray(prev) ? prev : [prev]).concat(value);
    }
    return this;
  },
  getHeader(name) {
    checkNameType(name);
    const list = this[kHeaders];
    const i = fieldAt(list, keyOf(name));
    return i < 0 ? undefined : list[i + 2];
  },
  getHeaders() {
    const out = Object.create(null);
    const list = this[kHeaders];
    for (let i = 0; i < list.length; i += 3) out[list[i]] = list[i + 2];
    return out;
  },
  getHeaderNames() {
    const list = this[kHeaders];
    const out = [];
    for (let i = 0; i < list.length; i += 3) out.push(list[i]);
    return out;
  },
  getRawHeaderNames() {
    const list = this[kHeaders];
    const out = [];
    for (let i = 0; i < list.length; i += 3) out.push(list[i + 1]);
    return out;
  },
  hasHeader(name) {
    checkNameType(name);
    return fieldAt(this[kHeaders], keyOf(name)) >= 0;
  },
  removeHeader(name) {
    checkNameType(name);
    this._assertHeadersOpen('remove');
    // As Node: what the handler takes away, the server does not add back.
    switch (keyOf(name)) {
      case 'content-length': this._removedContLen = true; break;
      case 'connection': this._removedConnection = true; break;
      case 'transfer-encoding': this._removedTE = true; break;
      case 'date': this.sendDate = false; break;
      default: break;
    }
    const list = this[kHeaders];
    const i = fieldAt(list, keyOf(name));
    if (i >= 0) list.splice(i, 3);
  },
};

// How Node's argument errors show the value they got ("Received ...").
function receivedText(v) {
  if (v === null) return 'null';
  if (typeof v === 'function') return `function ${v.name}`;
  if (typeof v === 'object') return v.constructor && v.constructor.name ? `an instance of ${v.constructor.name}` : 'an object';
  let shown = typeof v === 'string' ? `'${v.length > 25 ? `${v.slice(0, 25)}...` : v}'` : String(v);
  if (typeof v === 'bigint') shown += 'n';
  return `type ${typeof v} (${shown})`;
}

function checkNameType(name) {
  if (typeof name !== 'string') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string');
  }
}

function installOutgoingHeaders(proto) {
  for (const [key, fn] of Object.entries(outgoingHeaderMethods)) {
    Object.defineProperty(proto, key, { value: fn, writable: true, configurable: true });
  }
}

// Trailer fields as "Name: value\r\n" lines, checked as Node's addTrailers
// checks them (an object, or an array of [name, value] pairs).
function trailerLines(headers) {
  let lines = '';
  const isArray = Array.isArray(headers);
  for (const key of Object.keys(headers)) {
    const field = isArray ? headers[key][0] : key;
    const value = isArray ? headers[key][1] : headers[key];
    if (typeof field !== 'string' || !kTokenRe.test(field)) {
      throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Trailer name must be a valid HTTP token ["${field}"]`);
    }
    const values = Array.isArray(value) && value.length > 1 ? value
      : [Array.isArray(value) ? value.join('; ') : value];
    for (const v of values) {
      if (kInvalidValueRe.test(String(v))) {
        throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in trailer content ["${field}"]`);
      }
      lines += `${field}: ${v}\r\n`;
    }
  }
  return lines;
}

// A field line of its own, after the others even when its name is there
// already (writeHead's array form).
function addFieldLine(message, name, value) {
  message._assertHeadersOpen('set');
  const key = keyToSet(name);
  checkValue(name, value);
  message[kHeaders].push(key, name, value);
}

module.exports = {
  kHeaders, codedError, checkName, checkValue, installOutgoingHeaders, trailerLines, receivedText,
  kTokenRe, kInvalidValueRe, addFieldLine,
};
