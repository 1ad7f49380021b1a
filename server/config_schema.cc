#include "server/config_schema.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

#include "server/cli.h"

namespace kuai::server {

namespace {

namespace fs = std::filesystem;
using json::Value;

// ---------------------------------------------------------------- messages

std::string formatNumber(double d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", d);
  return buf;
}

// A value as a message shows it after "got": "abc", 12, true, null, an array...
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

std::string key(const std::string& path, const std::string& name) {
  return path.empty() ? name : path + "." + name;
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

// ---------------------------------------------------------------- the walk

// What reads a value: the checks every field uses, and the first error.
class Walk {
 public:
  Walk(std::string file, fs::path baseDir) : file_(std::move(file)), baseDir_(std::move(baseDir)) {}
  const std::string& error() const { return err_; }

  bool fail(const std::string& path, const std::string& msg) {
    err_ = file_ + ": " + (path.empty() ? "" : path + ": ") + msg;
    return false;
  }
  bool expected(const std::string& path, const std::string& what, const Value& got) {
    return fail(path, "expected " + what + ", got " + describe(got));
  }

  // Every member of `obj` must be one of `known`.
  bool knownKeys(const Value& obj, const std::string& path, const std::vector<std::string>& known) {
    for (const auto& m : obj.members) {
      if (std::find(known.begin(), known.end(), m.key) != known.end()) continue;
      std::string best;
      size_t bestDistance = SIZE_MAX;
      for (const std::string& k : known) {
        size_t d = editDistance(m.key, k);
        if (d < bestDistance) bestDistance = d, best = k;
      }
      std::string msg = "unknown key";
      if (bestDistance <= std::max<size_t>(1, std::min(m.key.size(), best.size()) / 3)) {
        msg += " (did you mean \"" + best + "\"?)";
      } else {
        msg += " (known keys:";
        for (const std::string& k : known) msg += " " + k;
        msg += ")";
      }
      return fail(key(path, m.key), msg);
    }
    return true;
  }

  bool object(const Value& v, const std::string& path) { return v.isObject() || expected(path, "an object", v); }

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
  bool oneOf(const Value& v, const std::string& path, const std::vector<std::pair<const char*, E>>& choices, E& out) {
    if (v.isString()) {
      for (const auto& c : choices) {
        if (v.string == c.first) {
          out = c.second;
          return true;
        }
      }
    }
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + json::quote(c.first);
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

 private:
  std::string file_;
  fs::path baseDir_;
  std::string err_;
};

// ---------------------------------------------------------------- schemas

// One key of an object: how its value is read into T. `required`: the hint
// shown when the key is missing (null: optional).
template <typename T>
struct Field {
  std::string key;
  std::function<bool(Walk&, const Value&, const std::string& at, T&)> read;
  const char* required = nullptr;
};
template <typename T>
using Schema = std::vector<Field<T>>;

// Reads `v` (an object) by `schema`, in the schema's order: unknown keys are
// refused (`alsoKnown`: keys read elsewhere), a required one must be there.
template <typename T>
bool readObject(Walk& w, const Value& v, const std::string& at, const Schema<T>& schema, T& target,
                const std::vector<std::string>& alsoKnown = {}) {
  std::vector<std::string> known;
  for (const Field<T>& f : schema) known.push_back(f.key);
  known.insert(known.end(), alsoKnown.begin(), alsoKnown.end());
  if (!w.knownKeys(v, at, known)) return false;
  for (const Field<T>& f : schema) {
    const Value* x = v.find(f.key);
    if (!x) {
      if (f.required) return w.fail(key(at, f.key), f.required[0] ? std::string("required ") + f.required : "required");
      continue;
    }
    if (!f.read(w, *x, key(at, f.key), target)) return false;
  }
  return true;
}

// Field makers. `get` reaches the member the value goes to.
template <typename T, typename Get>
Field<T> whole(const char* k, Get get, uint64_t min, uint64_t max) {
  return {k, [=](Walk& w, const Value& v, const std::string& at, T& t) { return w.whole(v, at, get(t), min, max); }};
}
template <typename T, typename Get>
Field<T> size(const char* k, Get get, uint64_t min, uint64_t max) {
  return {k, [=](Walk& w, const Value& v, const std::string& at, T& t) { return w.size(v, at, get(t), min, max); }};
}
template <typename T, typename Get>
Field<T> duration(const char* k, Get get) {
  return {k, [=](Walk& w, const Value& v, const std::string& at, T& t) { return w.duration(v, at, get(t)); }};
}
template <typename T, typename Get>
Field<T> flag(const char* k, Get get) {
  return {k, [=](Walk& w, const Value& v, const std::string& at, T& t) { return w.boolean(v, at, get(t)); }};
}
template <typename T>
Field<T> custom(const char* k, std::function<bool(Walk&, const Value&, const std::string&, T&)> read,
                const char* required = nullptr) {
  return {k, std::move(read), required};
}

// Where the top level reads into.
struct Top {
  ServerConfig& config;
  Site& site;
};

// ---- listen ----

bool resolvableHost(Walk& w, const Value& h, const std::string& at, std::string& host) {
  if (!w.string(h, at, host)) return false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (res) ::freeaddrinfo(res);
  if (rc != 0) return w.fail(at, "cannot resolve " + json::quote(h.string) + ": " + gai_strerror(rc));
  return true;
}

const Schema<tls::CertificateConfig>& certificateSchema() {
  using C = tls::CertificateConfig;
  static const Schema<C> s = {
      custom<C>("cert", [](Walk& w, const Value& v, const std::string& at, C& c) { return w.readableFile(v, at, c.certFile); },
                "(a PEM certificate chain file)"),
      custom<C>("key", [](Walk& w, const Value& v, const std::string& at, C& c) { return w.readableFile(v, at, c.keyFile); },
                "(the certificate's PEM private key file)"),
      custom<C>("ocsp", [](Walk& w, const Value& v, const std::string& at, C& c) { return w.readableFile(v, at, c.ocspFile); }),
  };
  return s;
}

bool certificate(Walk& w, const Value& v, const std::string& at, tls::CertificateConfig& cert) {
  return w.object(v, at) && readObject(w, v, at, certificateSchema(), cert);
}

// tls: { cert, key, ocsp? } | { certificates: [{ cert, key, ocsp? }, ...] }
bool tlsSection(Walk& w, const Value& v, const std::string& at, tls::TlsConfig& t) {
  if (!w.object(v, at)) return false;
  if (!w.knownKeys(v, at, {"cert", "key", "ocsp", "certificates"})) return false;
  const Value* list = v.find("certificates");
  if (!list) {
    t.certificates.emplace_back();
    return certificate(w, v, at, t.certificates.back());
  }
  if (v.members.size() != 1) {
    return w.fail(at, "give either cert/key/ocsp or certificates: [{ cert, key, ocsp }, ...], not both");
  }
  std::string lat = key(at, "certificates");
  if (!list->isArray()) return w.expected(lat, "an array of { cert, key, ocsp }", *list);
  if (list->array.empty()) return w.fail(lat, "expected at least one certificate");
  for (size_t i = 0; i < list->array.size(); ++i) {
    t.certificates.emplace_back();
    if (!certificate(w, list->array[i], elem(lat, i), t.certificates.back())) return false;
  }
  return true;
}

const Schema<ListenSpec>& listenerSchema() {
  using L = ListenSpec;
  static const Schema<L> s = {
      custom<L>("host", [](Walk& w, const Value& v, const std::string& at, L& l) { return resolvableHost(w, v, at, l.host); }),
      whole<L>("port", [](L& l) -> int& { return l.port; }, 0, 65535),
      custom<L>("tls", [](Walk& w, const Value& v, const std::string& at, L& l) {
        l.tls = true;
        return tlsSection(w, v, at, l.tlsConfig);
      }),
      custom<L>("http2", [](Walk& w, const Value& v, const std::string& at, L& l) {
        if (v.isBool()) {
          l.http2 = v.boolean ? Http2::kOn : Http2::kOff;
          return true;
        }
        if (v.isString() && v.string == "h2c") {
          l.http2 = Http2::kH2c;
          return true;
        }
        return w.expected(at, "true, false or \"h2c\"", v);
      }),
  };
  return s;
}

bool listener(Walk& w, const Value& v, const std::string& at, ListenSpec& l) {
  if (v.isNumber()) return w.whole(v, at, l.port, 0, 65535);
  if (!v.isObject()) return w.expected(at, "a port number or an object { host, port, tls, http2 }", v);
  Schema<ListenSpec> s = listenerSchema();
  s[1].required = "";
  return readObject(w, v, at, s, l);
}

// listen: PORT | [PORT | { host, port, tls, http2 }, ...]
bool listeners(Walk& w, const Value& v, const std::string& at, Site& site) {
  if (v.isNumber()) {
    site.listen.emplace_back();
    return w.whole(v, at, site.listen.back().port, 0, 65535);
  }
  if (!v.isArray()) return w.expected(at, "a port number or an array of listeners", v);
  if (v.array.empty()) return w.fail(at, "expected at least one listener");
  for (size_t i = 0; i < v.array.size(); ++i) {
    std::string lat = elem(at, i);
    site.listen.emplace_back();
    if (!listener(w, v.array[i], lat, site.listen.back())) return false;
    const ListenSpec& l = site.listen.back();
    for (size_t j = 0; j < i && l.port != 0; ++j) {
      if (site.listen[j].host == l.host && site.listen[j].port == l.port) {
        return w.fail(lat, l.host + " port " + std::to_string(l.port) + " is already listed at " + elem(at, j));
      }
    }
  }
  return true;
}

// ---- routes ----

// A file under a static route's root ("index.html", "/404.html"), kept
// without its leading '/'; no "." or ".." segments.
bool pathUnderRoot(Walk& w, const Value& v, const std::string& at, std::string& out) {
  if (!w.string(v, at, out)) return false;
  return normaliseRootPath(out) || w.expected(at, "a file's path under the root, like 'index.html'", v);
}

const Schema<StaticOptions>& staticSchema() {
  using S = StaticOptions;
  static const Schema<S> s = {
      custom<S>("root", [](Walk& w, const Value& v, const std::string& at, S& o) { return w.existingDirectory(v, at, o.root); },
                "(the directory to serve)"),
      flag<S>("list", [](S& o) -> bool& { return o.listDirectories; }),
      custom<S>("dotfiles", [](Walk& w, const Value& v, const std::string& at, S& o) {
        return w.oneOf<Dotfiles>(v, at, {{"ignore", Dotfiles::kIgnore}, {"deny", Dotfiles::kDeny}, {"allow", Dotfiles::kAllow}},
                                 o.dotfiles);
      }),
      custom<S>("index", [](Walk& w, const Value& v, const std::string& at, S& o) {
        if (!w.string(v, at, o.indexFile)) return false;
        if (o.indexFile.find('/') != std::string::npos || o.indexFile == "." || o.indexFile == "..") {
          return w.expected(at, "a file name without '/'", v);
        }
        return true;
      }),
      custom<S>("fallback", [](Walk& w, const Value& v, const std::string& at, S& o) {
        return pathUnderRoot(w, v, at, o.fallback);
      }),
      custom<S>("notFound", [](Walk& w, const Value& v, const std::string& at, S& o) {
        return pathUnderRoot(w, v, at, o.notFound);
      }),
  };
  return s;
}

// static: DIR | { root, list, index, dotfiles, fallback, notFound }
bool statics(Walk& w, const Value& v, const std::string& at, StaticOptions& s) {
  if (v.isString()) return w.existingDirectory(v, at, s.root);
  if (!v.isObject()) {
    return w.expected(at, "an object { root, list, index, dotfiles, fallback, notFound } or a directory", v);
  }
  if (!readObject(w, v, at, staticSchema(), s)) return false;
  // The pages must be there now: a typo is the config's error, not a 404
  // found later.
  for (auto [name, rel] : {std::pair{"fallback", &s.fallback}, std::pair{"notFound", &s.notFound}}) {
    if (rel->empty()) continue;
    std::string file = s.root + "/" + *rel;
    struct stat st;
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return w.fail(key(at, name), *rel + ": no such file under " + s.root);
    }
  }
  return true;
}

// "host:port" (IPv4, [IPv6] or a name, resolved now) or { address, weight }.
bool upstream(Walk& w, const Value& v, const std::string& at, UpstreamSpec& u) {
  const Value* address = &v;
  std::string aat = at;
  if (v.isObject()) {
    if (!w.knownKeys(v, at, {"address", "weight"})) return false;
    aat = key(at, "address");
    address = v.find("address");
    if (!address) return w.fail(aat, "required (\"host:port\")");
    if (const Value* x = v.find("weight")) {
      if (!w.whole(*x, key(at, "weight"), u.weight, 1, 1000)) return false;
    }
  } else if (!v.isString()) {
    return w.expected(at, "\"host:port\" or { address, weight }", v);
  }
  if (!address->isString()) return w.expected(aat, "\"host:port\"", *address);
  const std::string& a = address->string;
  std::string host, port;
  if (!a.empty() && a[0] == '[') {
    size_t close = a.find(']');
    if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') {
      return w.expected(aat, "\"host:port\" (IPv6 as \"[::1]:port\")", *address);
    }
    host = a.substr(1, close - 1);
    port = a.substr(close + 2);
  } else {
    size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 || a.find(':') != colon) {
      return w.expected(aat, "\"host:port\" (IPv6 as \"[::1]:port\")", *address);
    }
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
  }
  bool digits = !port.empty() && port.size() <= 5 &&
                std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
    return w.fail(aat, json::quote(a) + ": expected a port 1-65535 after the last ':'");
  }
  if (host.empty()) return w.expected(aat, "\"host:port\"", *address);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    if (res) ::freeaddrinfo(res);
    return w.fail(aat, "cannot resolve " + json::quote(host) + ": " + gai_strerror(rc));
  }
  std::memcpy(&u.addr, res->ai_addr, res->ai_addrlen);
  u.addrLen = res->ai_addrlen;
  ::freeaddrinfo(res);
  u.name = a;
  return true;
}

const Schema<ProxySpec>& keepaliveSchema() {
  using P = ProxySpec;
  static const Schema<P> s = {
      whole<P>("maxIdle", [](P& p) -> uint32_t& { return p.maxIdle; }, 0, 100000),
      duration<P>("idleTimeout", [](P& p) -> uint32_t& { return p.idleTimeoutMs; }),
      whole<P>("maxRequests", [](P& p) -> uint32_t& { return p.maxRequestsPerConnection; }, 1, 100000000),
  };
  return s;
}

const Schema<HealthCheckSpec>& healthSchema() {
  using H = HealthCheckSpec;
  static const Schema<H> s = {
      custom<H>("path", [](Walk& w, const Value& v, const std::string& at, H& h) {
        if (!w.string(v, at, h.path)) return false;
        if (h.path[0] != '/') return w.expected(at, "a path starting with '/'", v);
        for (unsigned char ch : h.path) {
          if (ch <= 0x20 || ch >= 0x7F) return w.expected(at, "a path without spaces", v);
        }
        return true;
      }),
      duration<H>("interval", [](H& h) -> uint32_t& { return h.intervalMs; }),
      duration<H>("timeout", [](H& h) -> uint32_t& { return h.timeoutMs; }),
  };
  return s;
}

const Schema<ProxySpec>& proxySchema() {
  using P = ProxySpec;
  static const Schema<P> s = {
      custom<P>("upstreams", [](Walk& w, const Value& v, const std::string& at, P& p) {
        if (!v.isArray()) return w.expected(at, "an array of \"host:port\" or { address, weight }", v);
        if (v.array.empty()) return w.fail(at, "expected at least one upstream");
        for (size_t i = 0; i < v.array.size(); ++i) {
          p.upstreams.emplace_back();
          if (!upstream(w, v.array[i], elem(at, i), p.upstreams.back())) return false;
        }
        return true;
      }, "(e.g. upstreams: ['127.0.0.1:9001'])"),
      custom<P>("balance", [](Walk& w, const Value& v, const std::string& at, P& p) {
        return w.oneOf<Balance>(v, at,
                                {{"round_robin", Balance::kRoundRobin},
                                 {"least_conn", Balance::kLeastConn},
                                 {"weighted", Balance::kWeighted}},
                                p.balance);
      }),
      duration<P>("connectTimeout", [](P& p) -> uint32_t& { return p.connectTimeoutMs; }),
      duration<P>("sendTimeout", [](P& p) -> uint32_t& { return p.sendTimeoutMs; }),
      duration<P>("readTimeout", [](P& p) -> uint32_t& { return p.readTimeoutMs; }),
      custom<P>("keepalive", [](Walk& w, const Value& v, const std::string& at, P& p) {
        if (v.isBool()) {
          if (!v.boolean) p.maxIdle = 0;  // false: a new connection per request
          return true;
        }
        if (!v.isObject()) return w.expected(at, "an object { maxIdle, idleTimeout, maxRequests } or false", v);
        return readObject(w, v, at, keepaliveSchema(), p);
      }),
      whole<P>("retries", [](P& p) -> uint32_t& { return p.retries; }, 0, 100),
      whole<P>("maxFails", [](P& p) -> uint32_t& { return p.maxFails; }, 0, 1000),
      duration<P>("failTimeout", [](P& p) -> uint32_t& { return p.failTimeoutMs; }),
      custom<P>("host", [](Walk& w, const Value& v, const std::string& at, P& p) {
        if (!w.string(v, at, p.hostRewrite)) return false;
        for (unsigned char ch : p.hostRewrite) {
          if (ch <= 0x20 || ch >= 0x7F) return w.expected(at, "a Host header value like \"backend.internal\"", v);
        }
        return true;
      }),
      flag<P>("stripPrefix", [](P& p) -> bool& { return p.stripPrefix; }),
      custom<P>("healthCheck", [](Walk& w, const Value& v, const std::string& at, P& p) {
        if (v.isBool()) {
          p.health.enabled = v.boolean;
          return true;
        }
        if (!v.isObject()) return w.expected(at, "an object { path, interval, timeout } or true/false", v);
        p.health.enabled = true;
        return readObject(w, v, at, healthSchema(), p.health);
      }),
  };
  return s;
}

const Schema<RouteSpec>& routeMatchSchema() {
  using R = RouteSpec;
  static const Schema<R> s = {
      custom<R>("match", [](Walk& w, const Value& v, const std::string& at, R& r) {
        if (!w.string(v, at, r.path)) return false;
        if (r.path[0] != '/') return w.expected(at, "a path starting with '/'", v);
        for (unsigned char ch : r.path) {
          if (ch <= 0x20 || ch == 0x7F || ch == '?' || ch == '#') {
            return w.expected(at, "a path without spaces, control characters, '?' or '#'", v);
          }
        }
        return true;
      }),
      flag<R>("exact", [](R& r) -> bool& { return r.exact; }),
      custom<R>("host", [](Walk& w, const Value& v, const std::string& at, R& r) {
        if (!w.string(v, at, r.host)) return false;
        for (char& ch : r.host) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        bool bracketed = r.host.front() == '[' && r.host.back() == ']';
        for (unsigned char ch : r.host) {
          if (ch <= 0x20 || ch >= 0x7F || ch == '/' || (ch == ':' && !bracketed)) {
            return w.expected(at, "a host name without port or path (e.g. \"example.com\")", v);
          }
        }
        return true;
      }),
      custom<R>("methods", [](Walk& w, const Value& v, const std::string& at, R& r) {
        if (!v.isArray()) return w.expected(at, "an array of methods like [\"GET\", \"POST\"]", v);
        if (v.array.empty()) return w.fail(at, "expected at least one method (leave the key out for any method)");
        for (size_t i = 0; i < v.array.size(); ++i) {
          const Value& m = v.array[i];
          if (!m.isString() || !isToken(m.string)) return w.expected(elem(at, i), "a method name like \"GET\"", m);
          std::string up = m.string;
          for (char& ch : up) ch = char(std::toupper(static_cast<unsigned char>(ch)));
          r.methods.push_back(std::move(up));
        }
        return true;
      }),
  };
  return s;
}

// A field value a rule may write: no control characters (CR/LF above all).
bool fieldValue(const std::string& s) {
  for (unsigned char ch : s) {
    if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return false;
  }
  return true;
}

// Fields the protocol writes itself (framing, the connection, Date): no rule
// may set or remove them.
bool protocolField(std::string lower) {
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* f : {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                        "trailer", "proxy-connection", "date"}) {
    if (lower == f) return true;
  }
  return false;
}

bool headerMap(Walk& w, const Value& v, const std::string& at, std::vector<std::pair<std::string, std::string>>& out) {
  if (!v.isObject()) return w.expected(at, "an object { \"Field-Name\": \"value\" }", v);
  for (const json::Member& m : v.members) {
    const std::string& name = m.key;
    const Value& value = m.value;
    std::string fat = key(at, name);
    if (!isToken(name)) return w.fail(fat, json::quote(name) + " is not a valid field name");
    if (protocolField(name)) return w.fail(fat, name + " is written by the protocol and cannot be set");
    if (!value.isString() || !fieldValue(value.string)) {
      return w.expected(fat, "a string without control characters", value);
    }
    out.emplace_back(name, value.string);
  }
  return true;
}

const Schema<HeaderRules>& headerRulesSchema() {
  using H = HeaderRules;
  static const Schema<H> s = {
      custom<H>("set", [](Walk& w, const Value& v, const std::string& at, H& h) { return headerMap(w, v, at, h.set); }),
      custom<H>("append", [](Walk& w, const Value& v, const std::string& at, H& h) {
        return headerMap(w, v, at, h.append);
      }),
      custom<H>("remove", [](Walk& w, const Value& v, const std::string& at, H& h) {
        if (!v.isArray()) return w.expected(at, "an array of field names like [\"X-Powered-By\"]", v);
        for (size_t i = 0; i < v.array.size(); ++i) {
          const Value& n = v.array[i];
          if (!n.isString() || !isToken(n.string)) return w.expected(elem(at, i), "a field name", n);
          if (protocolField(n.string)) {
            return w.fail(elem(at, i), n.string + " is written by the protocol and cannot be removed");
          }
          std::string lower = n.string;
          for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
          h.remove.push_back(std::move(lower));
        }
        return true;
      }),
  };
  return s;
}

const Schema<RedirectSpec>& redirectSchema() {
  using R = RedirectSpec;
  static const Schema<R> s = {
      custom<R>("to", [](Walk& w, const Value& v, const std::string& at, R& r) {
        if (!w.string(v, at, r.to)) return false;
        for (unsigned char ch : r.to) {
          if (ch <= 0x20 || ch == 0x7F) return w.expected(at, "a URL without spaces or control characters", v);
        }
        return true;
      }, "(e.g. to: 'https://$host$path$query')"),
      custom<R>("status", [](Walk& w, const Value& v, const std::string& at, R& r) {
        if (v.isNumber() && (v.number == 301 || v.number == 302 || v.number == 303 || v.number == 307 ||
                             v.number == 308)) {
          r.status = int(v.number);
          return true;
        }
        return w.expected(at, "one of 301, 302, 303, 307, 308", v);
      }),
  };
  return s;
}

const Schema<RateLimitSpec>& rateLimitSchema() {
  using L = RateLimitSpec;
  static const Schema<L> s = {
      custom<L>("rate", [](Walk& w, const Value& v, const std::string& at, L& l) {
        if (!v.isNumber() || !(v.number > 0) || v.number > 1e7) {
          return w.expected(at, "requests per second per client, a number above 0", v);
        }
        l.rate = v.number;
        return true;
      }, "(requests per second per client address)"),
      whole<L>("burst", [](L& l) -> uint32_t& { return l.burst; }, 1, 10000000),
  };
  return s;
}

// A route: what it matches (routeMatchSchema), then exactly one of static,
// proxy, app or redirect: what answers it; headers and rateLimit on any.
bool route(Walk& w, const Value& v, const std::string& at, RouteSpec& r) {
  if (!w.object(v, at)) return false;
  if (!readObject(w, v, at, routeMatchSchema(), r, {"static", "proxy", "app", "redirect", "headers", "rateLimit"})) {
    return false;
  }
  const Value* st = v.find("static");
  const Value* px = v.find("proxy");
  const Value* app = v.find("app");
  const Value* redirect = v.find("redirect");
  int handlers = (st ? 1 : 0) + (px ? 1 : 0) + (app ? 1 : 0) + (redirect ? 1 : 0);
  if (handlers != 1) {
    return w.fail(at, handlers == 0 ? "expected one of static, proxy, app or redirect (what the route does)"
                                    : "expected only one of static, proxy, app or redirect");
  }
  if (const Value* h = v.find("headers")) {
    auto rules = std::make_shared<HeaderRules>();
    std::string hat = key(at, "headers");
    if (!w.object(*h, hat) || !readObject(w, *h, hat, headerRulesSchema(), *rules)) return false;
    r.headers = std::move(rules);
  }
  if (const Value* rl = v.find("rateLimit")) {
    std::string rat = key(at, "rateLimit");
    if (!w.object(*rl, rat) || !readObject(w, *rl, rat, rateLimitSchema(), r.rateLimit)) return false;
  }
  if (redirect) {
    r.kind = RouteSpec::Kind::kRedirect;
    std::string rat = key(at, "redirect");
    if (redirect->isString()) return redirectSchema().front().read(w, *redirect, key(rat, "to"), r.redirect);
    return w.object(*redirect, rat) && readObject(w, *redirect, rat, redirectSchema(), r.redirect);
  }
  if (st) {
    r.kind = RouteSpec::Kind::kStatic;
    return statics(w, *st, key(at, "static"), r.statics);
  }
  if (app) {
    r.kind = RouteSpec::Kind::kApp;
    return w.readableFile(*app, key(at, "app"), r.app);
  }
  r.kind = RouteSpec::Kind::kProxy;
  auto spec = std::make_shared<ProxySpec>();
  std::string pat = key(at, "proxy");
  if (!w.object(*px, pat) || !readObject(w, *px, pat, proxySchema(), *spec)) return false;
  r.proxy = std::move(spec);
  return true;
}

// ---- limits, logging, the top level ----

const Schema<ServerConfig>& limitsSchema() {
  using C = ServerConfig;
  static const Schema<C> s = {
      size<C>("requestLine", [](C& c) -> uint32_t& { return c.limits.maxRequestLine; }, 64, 1 << 20),
      size<C>("fieldSize", [](C& c) -> uint32_t& { return c.limits.maxFieldSize; }, 64, 1 << 20),
      size<C>("headerBytes", [](C& c) -> uint32_t& { return c.limits.maxHeaderBytes; }, 256, 16 << 20),
      whole<C>("headers", [](C& c) -> uint32_t& { return c.limits.maxHeaders; }, 1, 100000),
      size<C>("bodyBytes", [](C& c) -> uint64_t& { return c.limits.maxBodyBytes; }, 0, 1ull << 40),
      duration<C>("headerTimeout", [](C& c) -> uint32_t& { return c.timeouts.headerMs; }),
      duration<C>("idleTimeout", [](C& c) -> uint32_t& { return c.timeouts.idleMs; }),
      duration<C>("bodyTimeout", [](C& c) -> uint32_t& { return c.timeouts.bodyMs; }),
      duration<C>("sendTimeout", [](C& c) -> uint32_t& { return c.timeouts.sendMs; }),
      whole<C>("maxRequests", [](C& c) -> uint32_t& { return c.maxRequestsPerConnection; }, 1, 100000000),
      duration<C>("shutdownTimeout", [](C& c) -> uint32_t& { return c.timeouts.shutdownMs; }),
  };
  return s;
}

const Schema<LoggingSpec>& loggingSchema() {
  using L = LoggingSpec;
  static const Schema<L> s = {
      custom<L>("access", [](Walk& w, const Value& v, const std::string& at, L& l) {
        std::string written;
        if (!w.string(v, at, written)) return false;
        if (written == "-") {
          l.accessLog = "-";
          return true;
        }
        l.accessLog = w.absolute(written);
        fs::path dir = fs::path(l.accessLog).parent_path();
        struct stat st;
        if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
          return w.fail(at, written + ": no such directory " + dir.string());
        }
        if (::stat(l.accessLog.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
          return w.fail(at, written + ": is a directory, not a file");
        }
        return true;
      }),
      custom<L>("metrics", [](Walk& w, const Value& v, const std::string& at, L& l) {
        if (!w.string(v, at, l.metricsPath)) return false;
        if (l.metricsPath[0] != '/') return w.expected(at, "a path starting with '/' (e.g. \"/metrics\")", v);
        for (unsigned char ch : l.metricsPath) {
          if (ch <= 0x20 || ch >= 0x7F || ch == '?' || ch == '#') {
            return w.expected(at, "a path without spaces, '?' or '#'", v);
          }
        }
        return true;
      }),
  };
  return s;
}

const Schema<CompressionSpec>& compressionSchema() {
  using C = CompressionSpec;
  static const Schema<C> s = {
      custom<C>("types", [](Walk& w, const Value& v, const std::string& at, C& c) {
        if (!v.isArray()) return w.expected(at, "an array of media types like [\"text/*\", \"application/json\"]", v);
        c.types.clear();
        for (size_t i = 0; i < v.array.size(); ++i) {
          const Value& t = v.array[i];
          size_t slash = t.isString() ? t.string.find('/') : std::string::npos;
          if (slash == std::string::npos || slash == 0 || slash + 1 == t.string.size() ||
              t.string.find_first_of(" ;,") != std::string::npos) {
            return w.expected(elem(at, i), "a media type like \"text/*\" or \"application/json\"", t);
          }
          c.types.push_back(t.string);
        }
        return true;
      }),
      size<C>("minSize", [](C& c) -> uint64_t& { return c.minSize; }, 0, 1ull << 30),
      custom<C>("levels", [](Walk& w, const Value& v, const std::string& at, C& c) {
        if (!w.object(v, at) || !w.knownKeys(v, at, {"br", "zstd", "gzip"})) return false;
        if (const Value* x = v.find("br"); x && !w.whole(*x, key(at, "br"), c.brotliLevel, 0, 11)) return false;
        if (const Value* x = v.find("zstd"); x && !w.whole(*x, key(at, "zstd"), c.zstdLevel, 1, 19)) return false;
        if (const Value* x = v.find("gzip"); x && !w.whole(*x, key(at, "gzip"), c.gzipLevel, 1, 9)) return false;
        return true;
      }),
      custom<C>("encodings", [](Walk& w, const Value& v, const std::string& at, C& c) {
        if (!v.isArray()) return w.expected(at, "an array of \"br\", \"zstd\", \"gzip\"", v);
        c.encodings = 0;
        for (size_t i = 0; i < v.array.size(); ++i) {
          Encoding e = Encoding::kIdentity;
          if (!w.oneOf<Encoding>(v.array[i], elem(at, i),
                                 {{"br", Encoding::kBrotli}, {"zstd", Encoding::kZstd}, {"gzip", Encoding::kGzip}}, e)) {
            return false;
          }
          c.encodings |= bit(e);
        }
        return true;
      }),
      flag<C>("precompressed", [](C& c) -> bool& { return c.precompressed; }),
      size<C>("cacheSize", [](C& c) -> uint64_t& { return c.cacheBytes; }, 0, 1ull << 40),
      size<C>("maxFileSize", [](C& c) -> uint64_t& { return c.maxFileSize; }, 0, 1ull << 40),
  };
  return s;
}

const Schema<Top>& topSchema() {
  static const Schema<Top> s = {
      custom<Top>("threads", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        return w.whole(v, at, t.config.threads, 1, 1024);
      }),
      custom<Top>("sticky", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        return w.boolean(v, at, t.config.sticky);
      }),
      custom<Top>("io", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        if (v.isString() && v.string == "io_uring") {
          t.config.io = IoBackend::kUring;
          return true;
        }
        return w.oneOf<IoBackend>(v, at,
                                  {{"auto", IoBackend::kAuto}, {"uring", IoBackend::kUring}, {"epoll", IoBackend::kEpoll}},
                                  t.config.io);
      }),
      custom<Top>("listen", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        return listeners(w, v, at, t.site);
      }, "(e.g. listen: 8080, or [{ host: '127.0.0.1', port: 8080 }])"),
      custom<Top>("routes", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        if (!v.isArray()) return w.expected(at, "an array of routes", v);
        if (v.array.empty()) return w.fail(at, "expected at least one route");
        for (size_t i = 0; i < v.array.size(); ++i) {
          t.site.routes.emplace_back();
          if (!route(w, v.array[i], elem(at, i), t.site.routes.back())) return false;
        }
        return true;
      }, "(e.g. routes: [{ match: '/', static: { root: './public' } }])"),
      custom<Top>("limits", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        return w.object(v, at) && readObject(w, v, at, limitsSchema(), t.config);
      }),
      custom<Top>("logging", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        return w.object(v, at) && readObject(w, v, at, loggingSchema(), t.site.logging);
      }),
      custom<Top>("compression", [](Walk& w, const Value& v, const std::string& at, Top& t) {
        if (v.isBool()) {
          t.site.compression.enabled = v.boolean;
          return true;
        }
        if (!v.isObject()) {
          return w.expected(at, "an object { types, minSize, levels, encodings, precompressed, cacheSize } or false", v);
        }
        return readObject(w, v, at, compressionSchema(), t.site.compression);
      }),
  };
  return s;
}

}  // namespace

bool readConfig(const Value& root, const std::string& file, const std::string& baseDir, ServerConfig& config,
                Site& site, std::string& err) {
  Walk w(file, baseDir);
  Top top{config, site};
  if (!root.isObject()) {
    w.expected("", "an object at the top level", root);
  } else if (readObject(w, root, "", topSchema(), top)) {
    return true;
  }
  err = w.error();
  return false;
}

}  // namespace kuai::server
