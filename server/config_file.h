// Config files: `kuai --config FILE` / `kuai --check-config FILE`.
//
// FILE is JSON (.json, parsed here) or JavaScript (.js/.cjs/.mjs, evaluated once
// by the pinned node running scripting/js/config_eval.js, which prints the
// exported value as JSON; the program hands its source over with
// setConfigEvaluator). The value is checked against the schema (unknown keys
// are errors) and turned into a Site plus the server-wide settings of
// ServerConfig.
//
// The schema (every key optional unless marked; sizes are a number of bytes or
// "8k"/"8m"/"1g"; durations are a number of milliseconds or "500ms"/"10s"/"2m";
// relative paths are taken from the config file's directory and stored absolute):
//   threads: 1..1024                       io: "auto" | "uring" | "epoll"
//   listen (required): PORT | [PORT | { host = "127.0.0.1", port (required) 0..65535,
//            tls: { cert, key, ocsp? } | { certificates: [{ cert, key, ocsp? }, ...] },
//            http2 = true (h2 by ALPN on TLS) | false | "h2c" (also clear-text prior knowledge) }, ...]
//   routes (required, first match wins): [{
//     match = "/" (path prefix, starts with '/'), exact = false, host (no port),
//     methods: ["GET", ...] (uppercased),
//     and exactly one of
//       static: DIR | { root (required, a directory), list = false, index = "index.html" }
//       app: FILE (a script)
//       proxy: { upstreams (required): ["host:port" | { address: "host:port", weight 1..1000 }, ...]
//                (IPv4, [IPv6] or a name resolved now), balance: "round_robin" | "least_conn" |
//                "weighted", connectTimeout, sendTimeout, readTimeout,
//                keepalive: false | { maxIdle 0..100000, idleTimeout, maxRequests },
//                retries 0..100, maxFails 0..1000, failTimeout, host (Host sent upstream),
//                stripPrefix: bool, healthCheck: bool | { path, interval, timeout } }
//   }, ...]
//   limits: { requestLine, fieldSize, headerBytes (sizes), headers (count), bodyBytes (size),
//             headerTimeout, idleTimeout, bodyTimeout, sendTimeout, shutdownTimeout (durations),
//             maxRequests (per connection) }
//   logging: { access: FILE | "-" (stdout), metrics: "/metrics" }
// Defaults not listed here are those of ServerConfig, ProxySpec and StaticOptions.
#pragma once

#include <string>

#include "server/config.h"
#include "server/json.h"

namespace kuai::server {

// Reads, evaluates and checks `path`. On success fills config.site (file =
// path), config.threads / io / limits / timeouts / maxRequestsPerConnection from
// the file (keys the file leaves out keep their current values), and copies the
// first listener into config.host / port / tls / tlsConfig. On failure returns
// false, leaves config untouched and sets err to one line naming the file, the
// key path and what was expected, e.g.
//   kuai.config.js: routes[1].proxy.balance: expected one of "round_robin", ...
bool loadConfigFile(const std::string& path, ServerConfig& config, std::string& err);

// The checking half of loadConfigFile: `root` is the file's value; relative
// paths resolve against baseDir; messages start with `file`.
bool applyConfigValue(const json::Value& root, const std::string& file, const std::string& baseDir,
                      ServerConfig& config, std::string& err);

// The JavaScript that evaluates a .js config (`node -e SOURCE FILE`; see
// scripting/js/config_eval.js): set once by the program before loading one.
void setConfigEvaluator(std::string source);

}  // namespace kuai::server
