'use strict';

// Route path patterns -> RegExp, and back (for router.url()). The syntax is
// that of path-to-regexp 6 (what @koa/router 13 accepts), implemented here:
//
//   /users/:id            named parameter, matches one segment ([^\/#\?]+?)
//   /users/:id?           optional (the '/' before it becomes optional too)
//   /files/:path*         zero or more segments; :path+ one or more
//   /users/:id(\d+)       custom pattern (no capturing groups inside)
//   /files/(.*)           unnamed parameter, named 0, 1, ... in ctx.params
//   /:a{-:b}?             group: prefix/suffix text around an optional param
//   /a\\:b                escaped special character
//   *                     kuai extension: a bare '*' is the same as '(.*)'
//   /files/*path          path-to-regexp 8 (@koa/router 15): the rest of the
//                         path, '/' included, as one parameter
//
// A '/' or '.' directly before a parameter is its prefix: it is matched
// only together with the parameter. Matching is case-insensitive unless
// `sensitive`, a trailing '/' is allowed unless `strict`, and `end: false`
// matches a path prefix ending at a '/' boundary (used by router.use()).

const kDelimiter = '/#?';
const kDefaultPattern = '[^\\/#\\?]+?';
const kPrefixes = './';

function escapeRegex(s) {
  return s.replace(/[.+*?=^!:${}()[\]|/\\]/g, '\\$&');
}

function isNameChar(c) {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

// path -> lexemes { type, value, index }.
function lex(str) {
  const out = [];
  let i = 0;
  while (i < str.length) {
    const ch = str[i];
    if (ch === '*' && i + 1 < str.length && isNameChar(str.charCodeAt(i + 1))) {
      // path-to-regexp 8 (@koa/router 15): *name matches the rest, '/'
      // included: the same as :name([\s\S]+).
      let j = i + 1;
      while (j < str.length && isNameChar(str.charCodeAt(j))) j++;
      out.push({ type: 'NAME', value: str.slice(i + 1, j), index: i });
      out.push({ type: 'PATTERN', value: '[\\s\\S]+', index: i });
      i = j;
    } else if (ch === '*' || ch === '+' || ch === '?') {
      out.push({ type: 'MODIFIER', value: ch, index: i++ });
    } else if (ch === '\\') {
      out.push({ type: 'ESCAPED', value: str[i + 1], index: i });
      i += 2;
    } else if (ch === '{') {
      out.push({ type: 'OPEN', value: ch, index: i++ });
    } else if (ch === '}') {
      out.push({ type: 'CLOSE', value: ch, index: i++ });
    } else if (ch === ':') {
      let j = i + 1;
      while (j < str.length && isNameChar(str.charCodeAt(j))) j++;
      if (j === i + 1) throw new TypeError(`Missing parameter name at ${i} in "${str}"`);
      out.push({ type: 'NAME', value: str.slice(i + 1, j), index: i });
      i = j;
    } else if (ch === '(') {
      let depth = 1;
      let j = i + 1;
      let pattern = '';
      if (str[j] === '?') throw new TypeError(`Pattern cannot start with "?" at ${j} in "${str}"`);
      while (j < str.length) {
        if (str[j] === '\\') { pattern += str[j] + str[j + 1]; j += 2; continue; }
        if (str[j] === ')') {
          depth--;
          if (depth === 0) { j++; break; }
        } else if (str[j] === '(') {
          depth++;
          if (str[j + 1] !== '?') throw new TypeError(`Capturing groups are not allowed at ${j} in "${str}"`);
        }
        pattern += str[j++];
      }
      if (depth) throw new TypeError(`Unbalanced pattern at ${i} in "${str}"`);
      if (!pattern) throw new TypeError(`Missing pattern at ${i} in "${str}"`);
      out.push({ type: 'PATTERN', value: pattern, index: i });
      i = j;
    } else {
      out.push({ type: 'CHAR', value: ch, index: i++ });
    }
  }
  out.push({ type: 'END', value: '', index: i });
  return out;
}

// path -> tokens: strings (literal text) and keys
// { name, prefix, suffix, pattern, modifier }.
function parse(str) {
  const lexemes = lex(str);
  const tokens = [];
  let anon = 0;
  let text = '';
  let i = 0;
  const take = (type) => (lexemes[i].type === type ? lexemes[i++].value : undefined);
  const takeText = () => {
    let s = '';
    for (;;) {
      const v = take('CHAR') ?? take('ESCAPED');
      if (v === undefined) return s;
      s += v;
    }
  };
  // Default pattern of a parameter: one segment, and (to keep matching
  // linear) never running into the literal text just before it, e.g. in
  // '/:a-:b' the second parameter cannot contain '-'.
  const defaultPattern = (prefix) => {
    const prev = tokens[tokens.length - 1];
    const prevText = prefix || (typeof prev === 'string' ? prev : '');
    if (prev !== undefined && typeof prev !== 'string' && !prevText) {
      throw new TypeError(`Must have text between two parameters, missing text after "${prev.name}"`);
    }
    for (const c of prevText) if (kDelimiter.includes(c)) return kDefaultPattern;
    if (!prevText) return kDefaultPattern;
    return `(?:(?!${escapeRegex(prevText)})[^${escapeRegex(kDelimiter)}])+?`;
  };
  const fail = () => {
    const l = lexemes[i];
    throw new TypeError(`Unexpected ${l.type} at ${l.index} in "${str}"`);
  };

  while (i < lexemes.length) {
    const ch = take('CHAR');
    const name = take('NAME');
    const pattern = take('PATTERN');
    if (name !== undefined || pattern !== undefined) {
      let prefix = ch || '';
      if (!kPrefixes.includes(prefix)) { text += prefix; prefix = ''; }
      if (text) { tokens.push(text); text = ''; }
      tokens.push({
        name: name !== undefined ? name : anon++,
        prefix,
        suffix: '',
        pattern: pattern !== undefined ? pattern : defaultPattern(prefix),
        modifier: take('MODIFIER') || '',
      });
      continue;
    }
    const literal = ch !== undefined ? ch : take('ESCAPED');
    if (literal !== undefined) { text += literal; continue; }

    // kuai extension: a bare '*' (not after a parameter) is '(.*)'.
    if (lexemes[i].type === 'MODIFIER' && lexemes[i].value === '*') {
      i++;
      let prefix = '';
      if (text && kPrefixes.includes(text[text.length - 1])) {
        prefix = text[text.length - 1];
        text = text.slice(0, -1);
      }
      if (text) { tokens.push(text); text = ''; }
      tokens.push({ name: anon++, prefix, suffix: '', pattern: '.*', modifier: '' });
      continue;
    }

    if (text) { tokens.push(text); text = ''; }
    if (take('OPEN') !== undefined) {
      const prefix = takeText();
      const gname = take('NAME');
      const gpattern = take('PATTERN');
      const suffix = takeText();
      if (take('CLOSE') === undefined) fail();
      tokens.push({
        name: gname !== undefined ? gname : gpattern !== undefined ? anon++ : '',
        pattern: gname !== undefined && gpattern === undefined ? defaultPattern(prefix) : gpattern || '',
        prefix,
        suffix,
        modifier: take('MODIFIER') || '',
      });
      continue;
    }
    if (take('END') === undefined) fail();
  }
  return tokens;
}

// tokens -> { regexp, keys }.
function tokensToRegExp(tokens, options) {
  const strict = !!options.strict;
  const end = options.end !== false;
  const delim = `[${escapeRegex(kDelimiter)}]`;
  const keys = [];
  let route = '^';
  for (const token of tokens) {
    if (typeof token === 'string') {
      route += escapeRegex(token);
      continue;
    }
    const prefix = escapeRegex(token.prefix);
    const suffix = escapeRegex(token.suffix);
    const mod = token.modifier;
    if (token.pattern) {
      keys.push(token);
      if (prefix || suffix) {
        if (mod === '+' || mod === '*') {
          route += `(?:${prefix}((?:${token.pattern})(?:${suffix}${prefix}(?:${token.pattern}))*)${suffix})${mod === '*' ? '?' : ''}`;
        } else {
          route += `(?:${prefix}(${token.pattern})${suffix})${mod}`;
        }
      } else if (mod === '+' || mod === '*') {
        route += `((?:${token.pattern})${mod})`;
      } else {
        route += `(${token.pattern})${mod}`;
      }
    } else {
      route += `(?:${prefix}${suffix})${mod}`;
    }
  }
  if (end) {
    if (!strict) route += `${delim}?`;
    route += '$';
  } else {
    const last = tokens[tokens.length - 1];
    const endsWithDelim = typeof last === 'string' ? kDelimiter.includes(last[last.length - 1]) : last === undefined;
    if (!strict) route += `(?:${delim}(?=$))?`;
    if (!endsWithDelim) route += `(?=${delim}|$)`;
  }
  return { regexp: new RegExp(route, options.sensitive ? '' : 'i'), keys };
}

// compile(path, { sensitive, strict, end }) -> { regexp, keys, tokens }.
function compile(path, options = {}) {
  if (path instanceof RegExp) {
    const groups = new RegExp(path.source + '|').exec('').length - 1;
    const keys = [];
    for (let i = 0; i < groups; i++) keys.push({ name: i, prefix: '', suffix: '', modifier: '', pattern: '' });
    return { regexp: path, keys, tokens: null };
  }
  const tokens = parse(path);
  const { regexp, keys } = tokensToRegExp(tokens, options);
  return { regexp, keys, tokens };
}

// tokens + params -> path (router.url()). Values are encoded with
// `encode` (encodeURIComponent by default) and checked against the
// parameter's pattern.
function toPath(tokens, data, options = {}) {
  const encode = options.encode || encodeURIComponent;
  const validate = options.validate !== false;
  const flags = options.sensitive ? '' : 'i';
  data = data || {};
  let out = '';
  for (const token of tokens) {
    if (typeof token === 'string') { out += token; continue; }
    const value = data[token.name];
    const optional = token.modifier === '?' || token.modifier === '*';
    const repeat = token.modifier === '*' || token.modifier === '+';
    const check = (segment) => {
      if (validate && token.pattern && !new RegExp(`^(?:${token.pattern})$`, flags).test(segment)) {
        throw new TypeError(`Expected "${token.name}" to match "${token.pattern}", but got "${segment}"`);
      }
      return token.prefix + segment + token.suffix;
    };
    if (Array.isArray(value)) {
      if (!repeat) throw new TypeError(`Expected "${token.name}" to not repeat, but got an array`);
      if (value.length === 0) {
        if (optional) continue;
        throw new TypeError(`Expected "${token.name}" to not be empty`);
      }
      for (const v of value) out += check(encode(String(v), token));
      continue;
    }
    if (typeof value === 'string' || typeof value === 'number') {
      out += check(encode(String(value), token));
      continue;
    }
    if (optional) continue;
    throw new TypeError(`Expected "${token.name}" to be ${repeat ? 'an array' : 'a string'}`);
  }
  return out;
}

module.exports = { compile, parse, toPath };
