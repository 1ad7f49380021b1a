'use strict';

// HTTP errors with the semantics of the `http-errors` package: createError()
// takes a status, a message, an existing Error and a props object in any
// order; the result carries `status`/`statusCode`, `expose` (true below 500)
// and, from props, anything else (typically `headers`).
//
// Classes: HttpError (abstract base), one subclass per 4xx/5xx status known
// to Node (`NotFoundError`, ...), reachable as createError[404] and
// createError.NotFound. Built once at module load.

const { STATUS_CODES } = require('http');

// Reason phrases. Node's table, which matches the `statuses` package.
const messages = STATUS_CODES;

class HttpError extends Error {
  constructor(message) {
    super(message);
    if (new.target === HttpError) throw new TypeError('cannot construct abstract class');
  }
}
Object.defineProperty(HttpError.prototype, 'name', {
  value: 'HttpError', writable: true, configurable: true,
});

// "Not Found" -> "NotFound", "I'm a Teapot" -> "ImATeapot".
function identifierOf(phrase) {
  return phrase.split(' ')
    .map((word) => word.slice(0, 1).toUpperCase() + word.slice(1))
    .join('')
    .replace(/[^ _0-9a-z]/gi, '');
}

function createError(...args) {
  let err;
  let message;
  let status = 500;
  let props;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const type = typeof arg;
    if (arg instanceof Error) {
      err = arg;
      status = err.status || err.statusCode || status;
    } else if (type === 'string') {
      message = arg;
    } else if (type === 'object') {
      props = arg;
    } else if (type === 'number' && i === 0) {
      status = arg;
    } else {
      throw new TypeError(`argument #${i + 1} unsupported type ${type}`);
    }
  }
  if (typeof status !== 'number' || (!messages[status] && (status < 400 || status >= 600))) {
    status = 500;
  }
  // Unknown codes inside 4xx/5xx get the 400/500 class (and its message).
  const Klass = createError[status] || (status >= 500 ? createError[500] : status >= 400 ? createError[400] : undefined);
  if (!err) {
    err = Klass ? new Klass(message) : new Error(message || messages[status]);
    Error.captureStackTrace(err, createError);
  }
  if (!Klass || !(err instanceof Klass) || err.status !== status) {
    err.expose = status < 500;
    err.status = err.statusCode = status;
  }
  if (props) {
    for (const key of Object.keys(props)) {
      if (key !== 'status' && key !== 'statusCode') err[key] = props[key];
    }
  }
  return err;
}

function defineStatusClass(code) {
  const phrase = messages[code];
  let name = identifierOf(phrase);
  const className = name.endsWith('Error') ? name : name + 'Error';
  const klass = {
    [className]: class extends HttpError {
      constructor(message) {
        super();
        Object.defineProperty(this, 'message', {
          value: message !== undefined ? message : phrase, enumerable: true, writable: true, configurable: true,
        });
        Object.defineProperty(this, 'name', {
          value: className, enumerable: false, writable: true, configurable: true,
        });
      }
    },
  }[className];
  klass.prototype.status = klass.prototype.statusCode = code;
  klass.prototype.expose = code < 500;
  createError[code] = klass;
  if (name.endsWith('Error')) name = name.slice(0, -5);
  createError[name] = klass;
}

for (const code of Object.keys(messages)) {
  if (code >= 400 && code < 600) defineStatusClass(Number(code));
}

function isHttpError(value) {
  if (!value || typeof value !== 'object') return false;
  if (value instanceof HttpError) return true;
  return value instanceof Error && typeof value.expose === 'boolean' &&
    typeof value.statusCode === 'number' && value.status === value.statusCode;
}

createError.HttpError = HttpError;
createError.isHttpError = isHttpError;

// http-assert: assert(value, status, message, props).
function assert(value, ...rest) {
  if (!value) throw createError(...rest);
}
assert.ok = assert;
assert.equal = (a, b, ...rest) => assert(a == b, ...rest); // eslint-disable-line eqeqeq
assert.notEqual = (a, b, ...rest) => assert(a != b, ...rest); // eslint-disable-line eqeqeq
assert.strictEqual = (a, b, ...rest) => assert(a === b, ...rest);
assert.notStrictEqual = (a, b, ...rest) => assert(a !== b, ...rest);
assert.deepEqual = (a, b, ...rest) => assert(require('util').isDeepStrictEqual(a, b), ...rest);
assert.notDeepEqual = (a, b, ...rest) => assert(!require('util').isDeepStrictEqual(a, b), ...rest);
assert.fail = (...rest) => { throw createError(...rest); };

module.exports = { createError, HttpError, isHttpError, assert, messages };
