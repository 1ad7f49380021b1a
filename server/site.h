// Site: what kuai serves, as a native structure: listeners, routes to static /
// proxy / app / fixed-response handlers, logging. The one model for both
// sources: a config file (kuai --config FILE, config_file.cc) and the command
// line (kuai serve DIR is one static route; site_config.cc), the command line
// overriding the file. Built at start-up (and again on SIGHUP); read-only
// afterwards and shared by the reactors through shared_ptr<const Site>.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/compression.h"
#include "server/static_files.h"
#include "tls/tls.h"

namespace kuai::server {

// HTTP/2 on a listener: kOn offers h2 by ALPN on TLS (clear text stays
// HTTP/1.1); kH2c also takes h2c with prior knowledge on clear text (the
// client's preface decides); kOff is HTTP/1.1 only.
enum class Http2 : uint8_t { kOff, kOn, kH2c };

struct ListenSpec {
  std::string host = "127.0.0.1";
  int port = 8080;
  bool tls = false;
  tls::TlsConfig tlsConfig;  // certificates when tls
  Http2 http2 = Http2::kOn;
};

// The TLS settings a listener's context is made with: its certificates, and
// ALPN offering h2 first unless HTTP/2 is off.
inline tls::TlsConfig listenerTlsConfig(const ListenSpec& l) {
  tls::TlsConfig t = l.tlsConfig;
  t.alpn = l.http2 == Http2::kOff ? std::vector<std::string>{"http/1.1"}
                                  : std::vector<std::string>{"h2", "http/1.1"};
  return t;
}

// One upstream server of a proxy route, its address resolved at load time.
struct UpstreamSpec {
  std::string name;  // as written: "127.0.0.1:9001"
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  uint32_t weight = 1;
};

enum class Balance { kRoundRobin, kLeastConn, kWeighted };

struct HealthCheckSpec {
  bool enabled = false;    // active checks; passive health is always on
  std::string path = "/";  // GET this; 2xx/3xx is healthy
  uint32_t intervalMs = 5'000;
  uint32_t timeoutMs = 2'000;
};

struct ProxySpec {
  std::vector<UpstreamSpec> upstreams;
  Balance balance = Balance::kRoundRobin;
  // Timeouts: connect -> 502, send (request to upstream stalls) / read (no
  // response byte for this long) -> 504.
  uint32_t connectTimeoutMs = 2'000;
  uint32_t sendTimeoutMs = 30'000;
  uint32_t readTimeoutMs = 30'000;
  // Keep-alive pool, per reactor and upstream.
  uint32_t maxIdle = 32;
  uint32_t idleTimeoutMs = 4'000;  // keep below the upstream's own keep-alive timeout
  uint32_t maxRequestsPerConnection = 1000;
  // Idempotent requests are tried again on another upstream after a connect
  // failure or a reset before any response byte, at most this many times.
  uint32_t retries = 1;
  // Passive health: this many consecutive failures mark an upstream down for
  // failTimeoutMs.
  uint32_t maxFails = 1;
  uint32_t failTimeoutMs = 10'000;
  // Host header sent upstream: empty keeps the client's.
  std::string hostRewrite;
  // Prefix of the path replaced before forwarding ("/api/" -> "/"), when set.
  bool stripPrefix = false;
  HealthCheckSpec health;
};

// A route's answer is a redirect: Location is `to` with $host (the request's
// host, port left out), $path (the whole request path, as sent) and $query
// ("?" and the query, or empty) substituted.
struct RedirectSpec {
  std::string to;
  int status = 302;
};

// Response header rules of a route, applied to every response it gives
// (whatever answers it: files, the proxy, a script, its error pages): remove
// these fields, set these (replacing any of the same name), append these.
// Names are compared case-insensitively; `remove` holds them lower-cased.
struct HeaderRules {
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::pair<std::string, std::string>> append;
  std::vector<std::string> remove;
  // `lines` ("Name: value\r\n" each) with the rules applied, into `out`;
  // serverField is cleared when the rules remove or set Server.
  void apply(std::string_view lines, std::string& out, bool& serverField) const;
};

// Requests per second per client address, with bursts of up to `burst`
// (token bucket); over it: 429 with Retry-After. Counted per reactor thread
// (shared-nothing): a client whose connections land on N threads may get up
// to N times the rate. rate 0: no limit.
struct RateLimitSpec {
  double rate = 0;
  uint32_t burst = 0;
};

struct RouteSpec {
  // Match: path prefix (or exact path), optional host (no port, case-insensitive)
  // and methods (empty: any).
  std::string path = "/";
  bool exact = false;
  std::string host;
  std::vector<std::string> methods;

  enum class Kind { kStatic, kProxy, kApp, kFixed, kRedirect } kind = Kind::kStatic;
  StaticOptions statics;  // kStatic (root made absolute)
  std::shared_ptr<const ProxySpec> proxy;  // kProxy
  std::string app;        // kApp: script path, absolute
  std::string body;       // kFixed (--respond PATH=BODY): 200 text/plain to GET and HEAD
  RedirectSpec redirect;  // kRedirect

  // Rules around whatever answers (any kind).
  std::shared_ptr<const HeaderRules> headers;  // null: none
  RateLimitSpec rateLimit;
};

struct LoggingSpec {
  std::string accessLog;  // path, "-" for stdout; empty: off
  std::string metricsPath;  // e.g. "/metrics": Prometheus text on every listener; empty: off
};

struct Site {
  std::string file;  // the config file it came from (for messages and reload); empty: the command line
  std::vector<ListenSpec> listen;
  std::vector<RouteSpec> routes;  // first match wins
  LoggingSpec logging;
  // Content-Encoding for static, proxy and app routes (on unless the config
  // says compression: false).
  CompressionSpec compression;
};

}  // namespace kuai::server
