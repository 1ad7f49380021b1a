#include "server/config_file.h"
#include "server/node_runtime.h"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>

#include "server/cli.h"

extern char** environ;

namespace kuai::server {

namespace fs = std::filesystem;
using json::Value;

// Runs in the pinned node as `node -e SOURCE FILE`. The config's own console output
// is sent to stderr so that stdout carries only the result.
const char* const kConfigEvaluatorSource = R"JS('use strict';
const path = require('path');
const file = path.resolve(process.argv[1]);
const realWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
let finished = false;
function finish(result) {
  finished = true;
  realWrite(JSON.stringify(result) + '\n', () => process.exit(0));
}
function fail(at, message) { finish({ error: { path: at, message } }); }
process.on('exit', (code) => {
  if (!finished && code === 0) {
    require('fs').writeSync(1, JSON.stringify({ error: { path: '',
      message: 'no config came out (the exported Promise never settled, or the file called process.exit())' } }) + '\n');
  }
});
const ONLY = ' (a config holds only JSON data: objects, arrays, strings, numbers, booleans, null)';
function check(v, at, seen) {
  switch (typeof v) {
    case 'string': case 'boolean': return null;
    case 'number': return Number.isFinite(v) ? null : { at, message: String(v) + ' is not a finite number' };
    case 'function': return { at, message: 'a function cannot be used here' + ONLY };
    case 'undefined': return { at, message: 'the value is undefined (leave the key out instead)' };
    case 'symbol': return { at, message: 'a symbol cannot be used here' + ONLY };
    case 'bigint': return { at, message: 'a BigInt cannot be used here (use a number)' };
  }
  if (v === null) return null;
  if (seen.has(v)) return { at, message: 'circular reference' };
  const proto = Object.getPrototypeOf(v);
  if (Array.isArray(v)) {
    seen.add(v);
    for (let i = 0; i < v.length; i++) {
      const e = check(v[i], at + '[' + i + ']', seen);
      if (e) return e;
    }
    seen.delete(v);
    return null;
  }
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto && proto.constructor && proto.constructor.name) || 'object';
    return { at, message: 'a ' + name + ' cannot be used here' + ONLY };
  }
  seen.add(v);
  for (const k of Object.keys(v)) {
    const e = check(v[k], at ? at + '.' + k : k, seen);
    if (e) return e;
  }
  seen.delete(v);
  return null;
}
async function evaluate(m) {
  if (typeof m === 'function') m = m();
  m = await m;
  if (m !== null && typeof m === 'object' && !Array.isArray(m) &&
      Object.getPrototypeOf(m) === Object.prototype && Object.keys(m).length === 0) {
    return fail('', 'the file exports an empty object (expected module.exports = { listen, routes, ... })');
  }
  const e = check(m, '', new Set());
  if (e) return fail(e.at, e.message);
  finish({ config: m });
}
function importDefault() {
  return import(require('url').pathToFileURL(file).href).then((ns) => {
    if (!('default' in ns)) {
      fail('', 'the module has no default export (expected export default { listen, routes, ... })');
      return new Promise(() => {});
    }
    return ns.default;
  });
}
// An error from the config file: printed as Node prints an uncaught one, but
// without a rethrow from here being shown as its source.
function die(e) {
  if (e instanceof SyntaxError) {  // uncaught, Node shows the file, line and caret
    process.nextTick(() => { throw e; });
    return;
  }
  process.stderr.write(require('util').inspect(e) + '\n');
  process.exit(1);
}
let exported;
if (file.endsWith('.mjs')) {
  exported = importDefault();
} else {
  try {
    exported = require(file);
  } catch (e) {
    if (!e || e.code !== 'ERR_REQUIRE_ESM') die(e);
    exported = importDefault();
  }
}
Promise.resolve(exported).then(evaluate).catch(die);
)JS";

namespace {

constexpr int kEvalTimeoutSeconds = 30;

// ---- messages ----

std::string formatNumber(double d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", d);
  return buf;
}

// A value as the message shows it after "got": "abc", 12, true, null, an array...
std::string describe(const Value& v) {
  switch (v.type) {
    case Value::Type::kNull: return "null";
    case Value::Type::kBool: return v.boolean ? "true" : "false";
    case Value::Type::kNumber: return formatNumber(v.number);
    case Value::Type::kString:
      if (v.string.size() > 60) return json::quote(v.string.substr(0, 57)) + "...";
      return json::quote(v.string);
    case Value::Type::kArray: return "an array";
    case Value::Type::kObject: return "an object";
  }
  return "?";
}

// Edits (insert, delete, replace, swap two neighbours) from a to b, ignoring case.
size_t editDistance(const std::string& a, const std::string& b) {
  auto lower = [](char c) { return char(std::tolower(static_cast<unsigned char>(c))); };
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string key(const std::string& path, const char* name) {
  return path.empty() ? std::string(name) : path + "." + name;
}
std::string elem(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

bool isToken(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (std::isalnum(c)) continue;
    if (!std::strchr("!#$%&'*+-.^_`|~", c) || c == 0) return false;
  }
  return true;
}

// ---- the walk over the value ----

class Checker {
 public:
  Checker(std::string file, fs::path baseDir) : file_(std::move(file)), baseDir_(std::move(baseDir)) {}

  const std::string& error() const { return err_; }

  bool fail(const std::string& path, const std::string& msg) {
    err_ = file_ + ": " + (path.empty() ? "" : path + ": ") + msg;
    return false;
  }

  bool expected(const std::string& path, const std::string& what, const Value& got) {
    return fail(path, "expected " + what + ", got " + describe(got));
  }

  // Every member of `obj` must be one of `known`.
  bool knownKeys(const Value& obj, const std::string& path, std::initializer_list<const char*> known) {
    for (const auto& m : obj.members) {
      bool ok = false;
      for (const char* k : known) ok = ok || m.first == k;
      if (ok) continue;
      std::string best;
      size_t bestDistance = SIZE_MAX;
      for (const char* k : known) {
        size_t d = editDistance(m.first, k);
        if (d < bestDistance) bestDistance = d, best = k;
      }
      std::string msg = "unknown key";
      if (bestDistance <= std::max<size_t>(1, std::min(m.first.size(), best.size()) / 3)) {
        msg += " (did you mean \"" + best + "\"?)";
      } else {
        msg += " (known keys:";
        for (const char* k : known) msg += std::string(" ") + k;
        msg += ")";
      }
      return fail(key(path, m.first.c_str()), msg);
    }
    return true;
  }

  bool object(const Value& v, const std::string& path) {
    return v.isObject() || expected(path, "an object", v);
  }

  bool string(const Value& v, const std::string& path, std::string& out, bool allowEmpty = false) {
    if (!v.isString()) return expected(path, "a string", v);
    if (v.string.empty() && !allowEmpty) return expected(path, "a non-empty string", v);
    out = v.string;
    return true;
  }

  bool boolean(const Value& v, const std::string& path, bool& out) {
    if (!v.isBool()) return expected(path, "true or false", v);
    out = v.boolean;
    return true;
  }

  template <typename T>
  bool whole(const Value& v, const std::string& path, T& out, uint64_t min, uint64_t max) {
    if (!v.isNumber() || v.number != std::floor(v.number) || v.number < double(min) || v.number > double(max)) {
      return expected(path, "a whole number " + std::to_string(min) + "-" + std::to_string(max), v);
    }
    out = T(v.number);
    return true;
  }

  template <typename T>
  bool size(const Value& v, const std::string& path, T& out, uint64_t min, uint64_t max) {
    std::optional<uint64_t> n;
    if (v.isNumber() && v.number >= 0 && v.number == std::floor(v.number) && v.number < 1.8e19) {
      n = uint64_t(v.number);
    } else if (v.isString()) {
      n = parseSize(v.string);
    }
    if (!n || *n < min || *n > max) {
      return expected(path, "a size from " + std::to_string(min) + " to " + std::to_string(max) +
                                " bytes (a number, or a string like \"8k\", \"1m\")", v);
    }
    out = T(*n);
    return true;
  }

  bool duration(const Value& v, const std::string& path, uint32_t& out) {
    std::optional<uint64_t> n;
    if (v.isNumber() && v.number >= 0 && v.number == std::floor(v.number) && v.number < 1e12) {
      n = uint64_t(v.number);
    } else if (v.isString()) {
      n = parseDurationMs(v.string);
    }
    if (!n || *n == 0 || *n > 86'400'000ull) {
      return expected(path, "a duration from 1ms to 24h (milliseconds, or a string like \"500ms\", \"10s\", \"2m\")", v);
    }
    out = uint32_t(*n);
    return true;
  }

  template <typename E>
  bool oneOf(const Value& v, const std::string& path, std::initializer_list<std::pair<const char*, E>> choices,
             E& out) {
    if (v.isString()) {
      for (const auto& c : choices) {
        if (v.string == c.first) {
          out = c.second;
          return true;
        }
      }
    }
    std::string list;
    for (const auto& c : choices) {
      list += (list.empty() ? "" : ", ") + json::quote(c.first);
    }
    return expected(path, "one of " + list, v);
  }

  // A path from the file, made absolute against the config file's directory.
  std::string absolute(const std::string& p) const {
    fs::path q(p);
    if (q.is_relative()) q = baseDir_ / q;
    return q.lexically_normal().string();
  }

  bool existingDirectory(const Value& v, const std::string& path, std::string& out) {
    std::string written;
    if (!string(v, path, written)) return false;
    out = absolute(written);
    struct stat st;
    if (::stat(out.c_str(), &st) != 0) {
      return fail(path, written + ": " + (errno == ENOENT ? std::string("no such directory") : std::strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) return fail(path, written + ": not a directory");
    if (::access(out.c_str(), R_OK | X_OK) != 0) return fail(path, written + ": " + std::strerror(errno));
    return true;
  }

  bool readableFile(const Value& v, const std::string& path, std::string& out) {
    std::string written;
    if (!string(v, path, written)) return false;
    out = absolute(written);
    struct stat st;
    if (::stat(out.c_str(), &st) != 0) {
      return fail(path, written + ": " + (errno == ENOENT ? std::string("no such file") : std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) return fail(path, written + ": is a directory, not a file");
    if (!S_ISREG(st.st_mode)) return fail(path, written + ": not a regular file");
    if (::access(out.c_str(), R_OK) != 0) return fail(path, written + ": " + std::strerror(errno));
    return true;
  }

  // ---- sections ----

  bool top(const Value& root, ServerConfig& c, Site& site) {
    if (!root.isObject()) return expected("", "an object at the top level", root);
    if (!knownKeys(root, "", {"threads", "io", "listen", "routes", "limits", "logging"})) return false;
    if (const Value* v = root.find("threads")) {
      if (!whole(*v, "threads", c.threads, 1, 1024)) return false;
    }
    if (const Value* v = root.find("io")) {
      if (v->isString() && v->string == "io_uring") {
        c.io = IoBackend::kUring;
      } else if (!oneOf<IoBackend>(*v, "io",
                                   {{"auto", IoBackend::kAuto}, {"uring", IoBackend::kUring},
                                    {"epoll", IoBackend::kEpoll}},
                                   c.io)) {
        return false;
      }
    }
    const Value* listen = root.find("listen");
    if (!listen) return fail("listen", "required (e.g. listen: 8080, or [{ host: '127.0.0.1', port: 8080 }])");
    if (!listeners(*listen, site)) return false;
    const Value* routes = root.find("routes");
    if (!routes) return fail("routes", "required (e.g. routes: [{ match: '/', static: { root: './public' } }])");
    if (!routes->isArray()) return expected("routes", "an array of routes", *routes);
    if (routes->array.empty()) return fail("routes", "expected at least one route");
    for (size_t i = 0; i < routes->array.size(); ++i) {
      site.routes.emplace_back();
      if (!route(routes->array[i], elem("routes", i), site.routes.back())) return false;
    }
    if (const Value* v = root.find("limits")) {
      if (!limits(*v, c)) return false;
    }
    if (const Value* v = root.find("logging")) {
      if (!logging(*v, site.logging)) return false;
    }
    return true;
  }

  bool listeners(const Value& v, Site& site) {
    if (v.isNumber()) {
      site.listen.emplace_back();
      return whole(v, "listen", site.listen.back().port, 0, 65535);
    }
    if (!v.isArray()) return expected("listen", "a port number or an array of listeners", v);
    if (v.array.empty()) return fail("listen", "expected at least one listener");
    for (size_t i = 0; i < v.array.size(); ++i) {
      std::string at = elem("listen", i);
      site.listen.emplace_back();
      if (!listener(v.array[i], at, site.listen.back())) return false;
      const ListenSpec& l = site.listen.back();
      for (size_t j = 0; j < i && l.port != 0; ++j) {
        if (site.listen[j].host == l.host && site.listen[j].port == l.port) {
          return fail(at, l.host + " port " + std::to_string(l.port) + " is already listed at " + elem("listen", j));
        }
      }
    }
    return true;
  }

  bool listener(const Value& v, const std::string& at, ListenSpec& l) {
    if (v.isNumber()) return whole(v, at, l.port, 0, 65535);
    if (!v.isObject()) return expected(at, "a port number or an object { host, port, tls }", v);
    if (!knownKeys(v, at, {"host", "port", "tls"})) return false;
    if (const Value* h = v.find("host")) {
      if (!string(*h, key(at, "host"), l.host)) return false;
      if (l.host.size() > 2 && l.host.front() == '[' && l.host.back() == ']') {
        l.host = l.host.substr(1, l.host.size() - 2);
      }
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE;
      addrinfo* res = nullptr;
      int rc = ::getaddrinfo(l.host.c_str(), nullptr, &hints, &res);
      if (res) ::freeaddrinfo(res);
      if (rc != 0) return fail(key(at, "host"), "cannot resolve " + json::quote(h->string) + ": " + gai_strerror(rc));
    }
    const Value* port = v.find("port");
    if (!port) return fail(key(at, "port"), "required");
    if (!whole(*port, key(at, "port"), l.port, 0, 65535)) return false;
    if (const Value* t = v.find("tls")) {
      if (!tlsSection(*t, key(at, "tls"), l.tlsConfig)) return false;
      l.tls = true;
    }
    return true;
  }

  bool certificate(const Value& v, const std::string& at, tls::CertificateConfig& cert) {
    if (!object(v, at)) return false;
    if (!knownKeys(v, at, {"cert", "key", "ocsp"})) return false;
    const Value* c = v.find("cert");
    if (!c) return fail(key(at, "cert"), "required (a PEM certificate chain file)");
    if (!readableFile(*c, key(at, "cert"), cert.certFile)) return false;
    const Value* k = v.find("key");
    if (!k) return fail(key(at, "key"), "required (the certificate's PEM private key file)");
    if (!readableFile(*k, key(at, "key"), cert.keyFile)) return false;
    if (const Value* o = v.find("ocsp")) {
      if (!readableFile(*o, key(at, "ocsp"), cert.ocspFile)) return false;
    }
    return true;
  }

  bool tlsSection(const Value& v, const std::string& at, tls::TlsConfig& t) {
    if (!object(v, at)) return false;
    if (!knownKeys(v, at, {"cert", "key", "ocsp", "certificates"})) return false;
    const Value* list = v.find("certificates");
    if (!list) {
      t.certificates.emplace_back();
      return certificate(v, at, t.certificates.back());
    }
    if (v.members.size() != 1) {
      return fail(at, "give either cert/key/ocsp or certificates: [{ cert, key, ocsp }, ...], not both");
    }
    std::string lat = key(at, "certificates");
    if (!list->isArray()) return expected(lat, "an array of { cert, key, ocsp }", *list);
    if (list->array.empty()) return fail(lat, "expected at least one certificate");
    for (size_t i = 0; i < list->array.size(); ++i) {
      t.certificates.emplace_back();
      if (!certificate(list->array[i], elem(lat, i), t.certificates.back())) return false;
    }
    return true;
  }

  bool route(const Value& v, const std::string& at, RouteSpec& r) {
    if (!object(v, at)) return false;
    if (!knownKeys(v, at, {"match", "exact", "host", "methods", "static", "proxy", "app"})) return false;
    if (const Value* m = v.find("match")) {
      if (!string(*m, key(at, "match"), r.path)) return false;
      if (r.path[0] != '/') return expected(key(at, "match"), "a path starting with '/'", *m);
      for (unsigned char ch : r.path) {
        if (ch <= 0x20 || ch == 0x7F || ch == '?' || ch == '#') {
          return expected(key(at, "match"), "a path without spaces, control characters, '?' or '#'", *m);
        }
      }
    }
    if (const Value* e = v.find("exact")) {
      if (!boolean(*e, key(at, "exact"), r.exact)) return false;
    }
    if (const Value* h = v.find("host")) {
      std::string hat = key(at, "host");
      if (!string(*h, hat, r.host)) return false;
      for (char& ch : r.host) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      bool bracketed = r.host.front() == '[' && r.host.back() == ']';
      for (unsigned char ch : r.host) {
        if (ch <= 0x20 || ch >= 0x7F || ch == '/' || (ch == ':' && !bracketed)) {
          return expected(hat, "a host name without port or path (e.g. \"example.com\")", *h);
        }
      }
    }
    if (const Value* ms = v.find("methods")) {
      std::string mat = key(at, "methods");
      if (!ms->isArray()) return expected(mat, "an array of methods like [\"GET\", \"POST\"]", *ms);
      if (ms->array.empty()) return fail(mat, "expected at least one method (leave the key out for any method)");
      for (size_t i = 0; i < ms->array.size(); ++i) {
        const Value& m = ms->array[i];
        if (!m.isString() || !isToken(m.string)) return expected(elem(mat, i), "a method name like \"GET\"", m);
        std::string up = m.string;
        for (char& ch : up) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        r.methods.push_back(std::move(up));
      }
    }
    const Value* st = v.find("static");
    const Value* px = v.find("proxy");
    const Value* app = v.find("app");
    int handlers = (st ? 1 : 0) + (px ? 1 : 0) + (app ? 1 : 0);
    if (handlers != 1) {
      return fail(at, handlers == 0 ? "expected one of static, proxy or app (what the route does)"
                                    : "expected only one of static, proxy or app");
    }
    if (st) {
      r.kind = RouteSpec::Kind::kStatic;
      return statics(*st, key(at, "static"), r.statics);
    }
    if (app) {
      r.kind = RouteSpec::Kind::kApp;
      return readableFile(*app, key(at, "app"), r.app);
    }
    r.kind = RouteSpec::Kind::kProxy;
    auto spec = std::make_shared<ProxySpec>();
    if (!proxy(*px, key(at, "proxy"), *spec)) return false;
    r.proxy = std::move(spec);
    return true;
  }

  bool statics(const Value& v, const std::string& at, StaticOptions& s) {
    if (v.isString()) return existingDirectory(v, at, s.root);  // static: './public'
    if (!v.isObject()) return expected(at, "an object { root, list, index } or a directory", v);
    if (!knownKeys(v, at, {"root", "list", "index"})) return false;
    const Value* root = v.find("root");
    if (!root) return fail(key(at, "root"), "required (the directory to serve)");
    if (!existingDirectory(*root, key(at, "root"), s.root)) return false;
    if (const Value* l = v.find("list")) {
      if (!boolean(*l, key(at, "list"), s.listDirectories)) return false;
    }
    if (const Value* i = v.find("index")) {
      if (!string(*i, key(at, "index"), s.indexFile)) return false;
      if (s.indexFile.find('/') != std::string::npos || s.indexFile == "." || s.indexFile == "..") {
        return expected(key(at, "index"), "a file name without '/'", *i);
      }
    }
    return true;
  }

  bool upstream(const Value& v, const std::string& at, UpstreamSpec& u) {
    const Value* address = &v;
    std::string aat = at;
    if (v.isObject()) {
      if (!knownKeys(v, at, {"address", "weight"})) return false;
      aat = key(at, "address");
      address = v.find("address");
      if (!address) return fail(aat, "required (\"host:port\")");
      if (const Value* w = v.find("weight")) {
        if (!whole(*w, key(at, "weight"), u.weight, 1, 1000)) return false;
      }
    } else if (!v.isString()) {
      return expected(at, "\"host:port\" or { address, weight }", v);
    }
    if (!address->isString()) return expected(aat, "\"host:port\"", *address);
    const std::string& a = address->string;
    std::string host, port;
    if (!a.empty() && a[0] == '[') {
      size_t close = a.find(']');
      if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') {
        return expected(aat, "\"host:port\" (IPv6 as \"[::1]:port\")", *address);
      }
      host = a.substr(1, close - 1);
      port = a.substr(close + 2);
    } else {
      size_t colon = a.rfind(':');
      if (colon == std::string::npos || colon == 0 || a.find(':') != colon) {
        return expected(aat, "\"host:port\" (IPv6 as \"[::1]:port\")", *address);
      }
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    bool digits = !port.empty() && port.size() <= 5 &&
                  std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return fail(aat, json::quote(a) + ": expected a port 1-65535 after the last ':'");
    }
    if (host.empty()) return expected(aat, "\"host:port\"", *address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res) {
      if (res) ::freeaddrinfo(res);
      return fail(aat, "cannot resolve " + json::quote(host) + ": " + gai_strerror(rc));
    }
    std::memcpy(&u.addr, res->ai_addr, res->ai_addrlen);
    u.addrLen = res->ai_addrlen;
    ::freeaddrinfo(res);
    u.name = a;
    return true;
  }

  bool proxy(const Value& v, const std::string& at, ProxySpec& p) {
    if (!object(v, at)) return false;
    if (!knownKeys(v, at,
                   {"upstreams", "balance", "connectTimeout", "sendTimeout", "readTimeout", "keepalive",
                    "retries", "maxFails", "failTimeout", "host", "stripPrefix", "healthCheck"})) {
      return false;
    }
    const Value* ups = v.find("upstreams");
    std::string uat = key(at, "upstreams");
    if (!ups) return fail(uat, "required (e.g. upstreams: ['127.0.0.1:9001'])");
    if (!ups->isArray()) return expected(uat, "an array of \"host:port\" or { address, weight }", *ups);
    if (ups->array.empty()) return fail(uat, "expected at least one upstream");
    for (size_t i = 0; i < ups->array.size(); ++i) {
      p.upstreams.emplace_back();
      if (!upstream(ups->array[i], elem(uat, i), p.upstreams.back())) return false;
    }
    if (const Value* b = v.find("balance")) {
      if (!oneOf<Balance>(*b, key(at, "balance"),
                          {{"round_robin", Balance::kRoundRobin},
                           {"least_conn", Balance::kLeastConn},
                           {"weighted", Balance::kWeighted}},
                          p.balance)) {
        return false;
      }
    }
    if (const Value* t = v.find("connectTimeout")) {
      if (!duration(*t, key(at, "connectTimeout"), p.connectTimeoutMs)) return false;
    }
    if (const Value* t = v.find("sendTimeout")) {
      if (!duration(*t, key(at, "sendTimeout"), p.sendTimeoutMs)) return false;
    }
    if (const Value* t = v.find("readTimeout")) {
      if (!duration(*t, key(at, "readTimeout"), p.readTimeoutMs)) return false;
    }
    if (const Value* k = v.find("keepalive")) {
      std::string kat = key(at, "keepalive");
      if (k->isBool()) {
        if (!k->boolean) p.maxIdle = 0;  // false: a new connection per request
      } else {
        if (!k->isObject()) return expected(kat, "an object { maxIdle, idleTimeout, maxRequests } or false", *k);
        if (!knownKeys(*k, kat, {"maxIdle", "idleTimeout", "maxRequests"})) return false;
        if (const Value* x = k->find("maxIdle")) {
          if (!whole(*x, key(kat, "maxIdle"), p.maxIdle, 0, 100000)) return false;
        }
        if (const Value* x = k->find("idleTimeout")) {
          if (!duration(*x, key(kat, "idleTimeout"), p.idleTimeoutMs)) return false;
        }
        if (const Value* x = k->find("maxRequests")) {
          if (!whole(*x, key(kat, "maxRequests"), p.maxRequestsPerConnection, 1, 100000000)) return false;
        }
      }
    }
    if (const Value* x = v.find("retries")) {
      if (!whole(*x, key(at, "retries"), p.retries, 0, 100)) return false;
    }
    if (const Value* x = v.find("maxFails")) {
      if (!whole(*x, key(at, "maxFails"), p.maxFails, 0, 1000)) return false;
    }
    if (const Value* x = v.find("failTimeout")) {
      if (!duration(*x, key(at, "failTimeout"), p.failTimeoutMs)) return false;
    }
    if (const Value* x = v.find("host")) {
      if (!string(*x, key(at, "host"), p.hostRewrite)) return false;
      for (unsigned char ch : p.hostRewrite) {
        if (ch <= 0x20 || ch >= 0x7F) return expected(key(at, "host"), "a Host header value like \"backend.internal\"", *x);
      }
    }
    if (const Value* x = v.find("stripPrefix")) {
      if (!boolean(*x, key(at, "stripPrefix"), p.stripPrefix)) return false;
    }
    if (const Value* h = v.find("healthCheck")) {
      std::string hat = key(at, "healthCheck");
      if (h->isBool()) {
        p.health.enabled = h->boolean;
      } else {
        if (!h->isObject()) return expected(hat, "an object { path, interval, timeout } or true/false", *h);
        if (!knownKeys(*h, hat, {"path", "interval", "timeout"})) return false;
        p.health.enabled = true;
        if (const Value* x = h->find("path")) {
          if (!string(*x, key(hat, "path"), p.health.path)) return false;
          if (p.health.path[0] != '/') return expected(key(hat, "path"), "a path starting with '/'", *x);
          for (unsigned char ch : p.health.path) {
            if (ch <= 0x20 || ch >= 0x7F) return expected(key(hat, "path"), "a path without spaces", *x);
          }
        }
        if (const Value* x = h->find("interval")) {
          if (!duration(*x, key(hat, "interval"), p.health.intervalMs)) return false;
        }
        if (const Value* x = h->find("timeout")) {
          if (!duration(*x, key(hat, "timeout"), p.health.timeoutMs)) return false;
        }
      }
    }
    return true;
  }

  bool limits(const Value& v, ServerConfig& c) {
    const std::string at = "limits";
    if (!object(v, at)) return false;
    if (!knownKeys(v, at,
                   {"requestLine", "fieldSize", "headerBytes", "headers", "bodyBytes", "headerTimeout",
                    "idleTimeout", "bodyTimeout", "sendTimeout", "maxRequests", "shutdownTimeout"})) {
      return false;
    }
    if (const Value* x = v.find("requestLine")) {
      if (!size(*x, key(at, "requestLine"), c.limits.maxRequestLine, 64, 1 << 20)) return false;
    }
    if (const Value* x = v.find("fieldSize")) {
      if (!size(*x, key(at, "fieldSize"), c.limits.maxFieldSize, 64, 1 << 20)) return false;
    }
    if (const Value* x = v.find("headerBytes")) {
      if (!size(*x, key(at, "headerBytes"), c.limits.maxHeaderBytes, 256, 16 << 20)) return false;
    }
    if (const Value* x = v.find("headers")) {
      if (!whole(*x, key(at, "headers"), c.limits.maxHeaders, 1, 100000)) return false;
    }
    if (const Value* x = v.find("bodyBytes")) {
      if (!size(*x, key(at, "bodyBytes"), c.limits.maxBodyBytes, 0, 1ull << 40)) return false;
    }
    if (const Value* x = v.find("headerTimeout")) {
      if (!duration(*x, key(at, "headerTimeout"), c.timeouts.headerMs)) return false;
    }
    if (const Value* x = v.find("idleTimeout")) {
      if (!duration(*x, key(at, "idleTimeout"), c.timeouts.idleMs)) return false;
    }
    if (const Value* x = v.find("bodyTimeout")) {
      if (!duration(*x, key(at, "bodyTimeout"), c.timeouts.bodyMs)) return false;
    }
    if (const Value* x = v.find("sendTimeout")) {
      if (!duration(*x, key(at, "sendTimeout"), c.timeouts.sendMs)) return false;
    }
    if (const Value* x = v.find("maxRequests")) {
      if (!whole(*x, key(at, "maxRequests"), c.maxRequestsPerConnection, 1, 100000000)) return false;
    }
    if (const Value* x = v.find("shutdownTimeout")) {
      if (!duration(*x, key(at, "shutdownTimeout"), c.timeouts.shutdownMs)) return false;
    }
    return true;
  }

  bool logging(const Value& v, LoggingSpec& l) {
    const std::string at = "logging";
    if (!object(v, at)) return false;
    if (!knownKeys(v, at, {"access", "metrics"})) return false;
    if (const Value* a = v.find("access")) {
      std::string aat = key(at, "access");
      std::string written;
      if (!string(*a, aat, written)) return false;
      if (written == "-") {
        l.accessLog = "-";
      } else {
        l.accessLog = absolute(written);
        fs::path dir = fs::path(l.accessLog).parent_path();
        struct stat st;
        if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
          return fail(aat, written + ": no such directory " + dir.string());
        }
        if (::stat(l.accessLog.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
          return fail(aat, written + ": is a directory, not a file");
        }
      }
    }
    if (const Value* m = v.find("metrics")) {
      std::string mat = key(at, "metrics");
      if (!string(*m, mat, l.metricsPath)) return false;
      if (l.metricsPath[0] != '/') return expected(mat, "a path starting with '/' (e.g. \"/metrics\")", *m);
      for (unsigned char ch : l.metricsPath) {
        if (ch <= 0x20 || ch >= 0x7F || ch == '?' || ch == '#') {
          return expected(mat, "a path without spaces, '?' or '#'", *m);
        }
      }
    }
    return true;
  }

 private:
  std::string file_;
  fs::path baseDir_;
  std::string err_;
};

bool endsWith(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool readFile(const std::string& path, std::string& out, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// Runs `node -e EVALUATOR path` with the pinned node; its stdout (the
// evaluator's JSON) goes to `out`, its stderr straight to ours.
bool evaluateScript(const std::string& path, std::string& out, std::string& err) {
  std::string node = nodeBinaryPath();
  if (node.empty() || ::access(node.c_str(), X_OK) != 0) {
    err = "cannot evaluate " + path + ": Node.js not found at " + node + " (run tools/setup, or use a .json config)";
    return false;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    err = "cannot evaluate " + path + ": pipe: " + std::strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  std::string flag = "-e";
  char* argv[] = {node.data(), flag.data(), const_cast<char*>(kConfigEvaluatorSource),
                  const_cast<char*>(path.c_str()), nullptr};
  // A server reloading its config may block or ignore signals; the child
  // starts with none blocked and the usual dispositions.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, reset;
  sigemptyset(&none);
  sigemptyset(&reset);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&reset, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &reset);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, node.c_str(), &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    err = "cannot evaluate " + path + ": cannot run " + node + ": " + std::strerror(rc);
    return false;
  }

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kEvalTimeoutSeconds);
  bool timedOut = false;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = ::poll(&p, 1, int(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;
    ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.append(buf, size_t(got));
  }
  ::close(fds[0]);
  if (timedOut) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timedOut) {
    err = path + ": could not be evaluated: still running after " + std::to_string(kEvalTimeoutSeconds) +
          "s (does the exported Promise settle?)";
    return false;
  }
  if (WIFSIGNALED(status)) {
    err = path + ": could not be evaluated (node was killed by signal " + std::to_string(WTERMSIG(status)) + ")";
    return false;
  }
  if (WEXITSTATUS(status) != 0) {
    err = path + ": could not be evaluated (see the error above; node exited with status " +
          std::to_string(WEXITSTATUS(status)) + ")";
    return false;
  }
  return true;
}

}  // namespace

bool applyConfigValue(const Value& root, const std::string& file, const std::string& baseDir, ServerConfig& config,
                      std::string& err) {
  ServerConfig c = config;
  auto site = std::make_shared<Site>();
  site->file = file;
  Checker check(file, baseDir);
  if (!check.top(root, c, *site)) {
    err = check.error();
    return false;
  }
  const ListenSpec& first = site->listen.front();
  c.host = first.host;
  c.port = first.port;
  c.tls = first.tls;
  c.tlsConfig = first.tlsConfig;
  c.site = std::move(site);
  config = std::move(c);
  return true;
}

bool loadConfigFile(const std::string& path, ServerConfig& config, std::string& err) {
  bool isJson = endsWith(path, ".json");
  bool isScript = endsWith(path, ".js") || endsWith(path, ".cjs") || endsWith(path, ".mjs");
  if (!isJson && !isScript) {
    err = path + ": unknown kind of config file (expected a name ending in .json, .js, .cjs or .mjs)";
    return false;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    err = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    err = path + ": is a directory, not a config file";
    return false;
  }
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  std::string baseDir = (ec ? fs::path(path) : abs).lexically_normal().parent_path().string();

  Value root;
  if (isJson) {
    std::string text;
    if (!readFile(path, text, err)) return false;
    std::string perr;
    if (!json::parse(text, root, perr)) {
      err = path + ":" + perr;
      return false;
    }
    return applyConfigValue(root, path, baseDir, config, err);
  }

  std::string out;
  if (!evaluateScript(path, out, err)) return false;
  Value envelope;
  std::string perr;
  if (out.empty()) {
    err = path + ": could not be evaluated (node printed no result; does the file call process.exit()?)";
    return false;
  }
  if (!json::parse(out, envelope, perr) || !envelope.isObject()) {
    err = path + ": could not be evaluated (node printed something that is not the expected JSON)";
    return false;
  }
  if (const Value* e = envelope.find("error")) {
    const Value* at = e->find("path");
    const Value* msg = e->find("message");
    std::string where = at && at->isString() && !at->string.empty() ? at->string + ": " : "";
    err = path + ": " + where + (msg && msg->isString() ? msg->string : "cannot be used as a config");
    return false;
  }
  const Value* value = envelope.find("config");
  if (!value) {
    err = path + ": could not be evaluated (node printed no config)";
    return false;
  }
  return applyConfigValue(*value, path, baseDir, config, err);
}

}  // namespace kuai::server
