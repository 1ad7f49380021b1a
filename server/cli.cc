#include "server/cli.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace kuai::server {

const char* const kVersion = "0.1.0";

std::string usage() {
  return R"(kuai — a fast HTTP server

Usage:
  kuai serve DIR [options]     serve the files under DIR
  kuai --config FILE           serve what FILE describes: listeners, routes to
                               static files, proxies and apps, limits, logging
                               (.json, or .js/.cjs/.mjs evaluated once by Node)
  kuai --check-config FILE     check FILE and exit (0 when it is valid)
  kuai [options] [node options] script.js [--] [arguments]
                               run a script in a Node.js environment per reactor
  kuai [options] -e CODE       run CODE the same way ('-' reads it from stdin)
  kuai -p CODE                 run CODE and print its value (thread 0)
  kuai [-i]                    Node's REPL (require('kuai') works), on a terminal
  kuai -c script.js            check the script's syntax without running it
  kuai --help | --version | --v8-options

Options (--opt value and --opt=value alike):
  --host H               address to listen on (default 127.0.0.1)
  --port P               port (default 8080; 0 picks a free one)
  --threads N            reactor threads (default: one per core)
  --sticky               a client's connections all go to the same thread (by
                           its address), for apps that keep per-process session
                           state such as socket.io's long-polling
  --io auto|uring|epoll  I/O backend (default auto: io_uring, epoll if refused)
  --list                 list directories that have no index.html
  --no-compression       send bodies as they are (by default text-like files and
                           proxied/app answers go out as br, zstd or gzip to clients
                           that accept them; file.br/.zst/.gz siblings are used)
  --dotfiles             serve paths with a segment starting with '.' (.env, .git/);
                           by default they answer 404 (/.well-known/ is always served)
  --fallback FILE        paths that are not there get FILE (under DIR) with 200:
                           a single-page app's index.html
  --not-found FILE       paths that are not there get FILE (under DIR) with 404
  --respond PATH=BODY    answer GET/HEAD on PATH with 200 text/plain BODY (repeatable)
  --tls-cert FILE        serve HTTPS with this PEM certificate chain; repeat with
  --tls-key FILE           its key for more certificates (chosen by SNI; first is default)
  --tls-ocsp FILE        staple this DER OCSP response for the preceding certificate
  --no-http2             HTTP/1.1 only (by default TLS offers h2 by ALPN)
  --h2c                  also take HTTP/2 in clear text from clients that start with
                           its preface (prior knowledge)
  SIGHUP reloads the certificates without dropping connections. SIGUSR2 upgrades
  the binary: the executable kuai was started from (a new version put in its
  place) starts on the same listening sockets; the old process drains once the
  new one serves, or goes on serving if it cannot start.

Scripts (as with node; anything else that starts with '-' goes to node itself):
  -r, --require MODULE   load MODULE in every environment before the script
  --import MODULE        import MODULE (ESM) in every environment before the script
  --inspect[=[HOST:]PORT]  an inspector per thread: thread k on PORT+k
                           (default 127.0.0.1:9229), each address printed
  --inspect-brk[=...]    the same, and break on the script's first line
  --inspect-wait[=...]   the same, and wait for a debugger before running
  --watch                when the script's files change, replace each thread's
                         environment, one at a time; sockets stay open
  --watch-path PATH      watch PATH instead (repeatable)
  --env-file FILE, --max-old-space-size N, --enable-source-maps, ...: Node's own
  --max-semi-space-size N  V8's young generation per environment, MiB [4]

Limits (defaults in brackets; sizes take k/m, durations ms/s/m):
  --max-request-line SIZE   request line [8k] -> 414
  --max-field-size SIZE     one header field [8k] -> 431
  --max-header-bytes SIZE   whole header block [32k; scripts: 16k, as Node] -> 431
  --max-headers N           header fields [100; scripts: no count] -> 431
  --max-body SIZE           request body [1m; scripts: none, as Node] -> 413
  --header-timeout DUR      request head must arrive within [10s; scripts: their
                            server.headersTimeout, 60s as in Node] -> 408
  --idle-timeout DUR        idle keep-alive connections closed after [10s]
  --body-timeout DUR        request body stalled for [30s; scripts: none, the whole
                            request within server.requestTimeout (300s)] -> 408
  --max-requests N          requests per connection [1000]
  --shutdown-timeout DUR    SIGTERM/SIGINT: in-flight requests finish within [10s]
  --cpu-budget DUR          scripts: one call into JS may run this long [5s]; then
                            that request gets 503 and the thread's environment is
                            replaced (also after an uncaught exception or a heap
                            near its limit); other threads keep serving
)";
}

std::optional<uint64_t> parseSize(const std::string& s) {
  if (s.empty()) return std::nullopt;
  size_t i = 0;
  uint64_t n = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (n > (std::numeric_limits<uint64_t>::max() - 9) / 10) return std::nullopt;
    n = n * 10 + uint64_t(s[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit = s.substr(i);
  uint64_t mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "K" || unit == "kb" || unit == "KiB") mult = 1024;
  else if (unit == "m" || unit == "M" || unit == "mb" || unit == "MiB") mult = 1024 * 1024;
  else if (unit == "g" || unit == "G" || unit == "gb" || unit == "GiB") mult = 1024ull * 1024 * 1024;
  else return std::nullopt;
  if (n > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return n * mult;
}

std::optional<uint64_t> parseDurationMs(const std::string& s) {
  if (s.empty()) return std::nullopt;
  size_t i = 0;
  uint64_t n = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (n > 1'000'000'000ull) return std::nullopt;
    n = n * 10 + uint64_t(s[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit = s.substr(i);
  if (unit == "ms") return n;
  if (unit.empty() || unit == "s") return n * 1000;
  if (unit == "m") return n * 60'000;
  return std::nullopt;
}

namespace {

// The options that describe the server (not a script), by their canonical
// name; nullptr for the others. `serve`: after `kuai serve`, -p is --port.
const char* serverOption(const std::string& a, bool serve) {
  static constexpr const char* kNames[] = {
      "--host", "--port", "--threads", "--sticky", "--io", "--tls-cert", "--tls-key", "--tls-ocsp", "--no-http2", "--h2c", "--list", "--dotfiles", "--no-compression", "--respond",
      "--fallback", "--not-found",
      "--max-request-line", "--max-field-size", "--max-header-bytes", "--max-headers", "--max-body",
      "--header-timeout", "--idle-timeout", "--body-timeout", "--shutdown-timeout", "--cpu-budget",
      "--max-requests",
  };
  if (a == "-t") return "--threads";
  if (a == "-p" && serve) return "--port";
  for (const char* n : kNames) {
    if (a == n) return n;
  }
  return nullptr;
}

// Node's options that take a value, for the `--opt value` form (`--opt=value`
// needs no list). V8 options with values are spelled the same way.
bool nodeOptionTakesValue(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "--allow-fs-read", "--allow-fs-write", "-C", "--conditions", "--cpu-prof-dir",
      "--cpu-prof-interval", "--cpu-prof-name", "--diagnostic-dir", "--disable-proto",
      "--disable-warning", "--dns-result-order", "--env-file", "--env-file-if-exists",
      "--experimental-loader", "--loader", "--heap-prof-dir", "--heap-prof-interval",
      "--heap-prof-name", "--heapsnapshot-near-heap-limit", "--heapsnapshot-signal",
      "--icu-data-dir", "--input-type", "--localstorage-file", "--max-http-header-size",
      "--max-old-space-size-percentage", "--network-family-autoselection-attempt-timeout",
      "--openssl-config", "--redirect-warnings", "--report-filename", "--report-signal",
      "--secure-heap", "--secure-heap-min", "--title", "--tls-cipher-list", "--tls-keylog",
      "--trace-event-categories", "--trace-event-file-pattern", "--trace-require-module",
      "--unhandled-rejections", "--use-largepages", "--v8-pool-size",
      // V8
      "--max-old-space-size", "--max-semi-space-size", "--stack-size", "--stack-trace-limit",
  };
  for (std::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

struct Parser {
  explicit Parser(const std::vector<std::string>& a) : args(a) {}

  const std::vector<std::string>& args;
  size_t i = 0;
  CliResult result;
  bool bodySet = false;  // limits given on the command line (else script defaults)
  bool headerBytesSet = false;
  bool headersSet = false;
  std::optional<std::string> inlineValue;  // the value of --opt=value
  static constexpr uint64_t kUnlimitedBody = ~uint64_t(0);

  bool fail(std::string msg) {
    result.action = CliResult::Action::kError;
    result.error = std::move(msg);
    return false;
  }

  bool value(const std::string& flag, std::string& out) {
    if (inlineValue) {
      out = *inlineValue;
      inlineValue.reset();
      return true;
    }
    if (i + 1 >= args.size()) return fail("option " + flag + " needs a value");
    out = args[++i];
    return true;
  }

  template <typename T>
  bool size(const std::string& flag, T& out, uint64_t min, uint64_t max) {
    std::string v;
    if (!value(flag, v)) return false;
    auto n = parseSize(v);
    if (!n || *n < min || *n > max) {
      return fail("option " + flag + ": '" + v + "' is not a valid size (e.g. 512, 8k, 1m)");
    }
    out = T(*n);
    return true;
  }

  bool duration(const std::string& flag, uint32_t& out) {
    std::string v;
    if (!value(flag, v)) return false;
    auto n = parseDurationMs(v);
    if (!n || *n == 0 || *n > 86'400'000ull) {
      return fail("option " + flag + ": '" + v + "' is not a valid duration (e.g. 500ms, 10s, 2m)");
    }
    out = uint32_t(*n);
    return true;
  }

  bool integer(const std::string& flag, long& out, long min, long max) {
    std::string v;
    if (!value(flag, v)) return false;
    return wholeNumber(flag, v, out, min, max);
  }

  bool wholeNumber(const std::string& flag, const std::string& v, long& out, long min, long max) {
    char* end = nullptr;
    errno = 0;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || errno || n < min || n > max) {
      return fail("option " + flag + ": '" + v + "' must be a whole number from " +
                  std::to_string(min) + " to " + std::to_string(max));
    }
    out = n;
    return true;
  }

  // --inspect[=[host:]port], as Node reads it.
  bool inspectAddress(const std::string& flag, const std::string& v) {
    ServerConfig::Inspect& in = result.config.inspect;
    std::string port = v;
    size_t colon = v.rfind(':');
    if (colon != std::string::npos) {
      std::string host = v.substr(0, colon);
      if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      if (host.empty()) return fail("option " + flag + ": '" + v + "' has no host before ':'");
      in.host = host;
      port = v.substr(colon + 1);
    } else if (!v.empty() && !std::isdigit(static_cast<unsigned char>(v[0]))) {
      in.host = v;  // --inspect=HOST
      return true;
    }
    long n = 0;
    if (!wholeNumber(flag, port, n, 0, 65535)) return false;
    in.port = int(n);
    return true;
  }

  bool run() {
    ServerConfig& c = result.config;
    std::vector<std::string> positional;
    std::string configFlag;          // --config or --check-config, when given
    for (i = 0; i < args.size(); ++i) {
      std::string a = args[i];
      inlineValue.reset();
      // --opt=value: the same as --opt value.
      if (a.size() > 3 && a[0] == '-' && a[1] == '-') {
        size_t eq = a.find('=');
        if (eq != std::string::npos && eq > 2) {
          inlineValue = a.substr(eq + 1);
          a.resize(eq);
        }
      }
      long n = 0;
      if (const char* name = serverOption(a, !positional.empty() && positional[0] == "serve")) {
        c.given.insert(name);  // with a config file, these override it
      }
      if (a == "--help" || a == "-h") {
        result.action = CliResult::Action::kHelp;
        return true;
      } else if (a == "--version" || a == "-v") {
        result.action = CliResult::Action::kVersion;
        return true;
      } else if (a == "--config" || a == "--check-config") {
        if (!configFlag.empty()) {
          return fail(configFlag == a ? "option " + a + " given twice"
                                      : "options --config and --check-config cannot be used together");
        }
        if (!value(a, c.configFile)) return false;
        if (c.configFile.empty()) return fail("option " + a + " needs a file name");
        configFlag = a;
        c.checkConfigOnly = a == "--check-config";
      } else if (a == "--host") {
        if (!value(a, c.host)) return false;
      } else if (a == "--port" || (a == "-p" && !positional.empty() && positional[0] == "serve")) {
        if (!integer(a, n, 0, 65535)) return false;
        c.port = int(n);
      } else if (a == "--threads" || a == "-t") {
        if (!integer(a, n, 1, 1024)) return false;
        c.threads = int(n);
      } else if (a == "--io") {
        std::string v;
        if (!value(a, v)) return false;
        if (v == "auto") c.io = IoBackend::kAuto;
        else if (v == "uring" || v == "io_uring") c.io = IoBackend::kUring;
        else if (v == "epoll") c.io = IoBackend::kEpoll;
        else return fail("option --io: '" + v + "' is not one of auto, uring, epoll");
      } else if (a == "--tls-cert") {
        std::string v;
        if (!value(a, v)) return false;
        c.tlsConfig.certificates.push_back(tls::CertificateConfig{v, "", "", "", ""});
      } else if (a == "--tls-key") {
        std::string v;
        if (!value(a, v)) return false;
        if (c.tlsConfig.certificates.empty() || !c.tlsConfig.certificates.back().keyFile.empty()) {
          return fail("option --tls-key must follow its --tls-cert");
        }
        c.tlsConfig.certificates.back().keyFile = v;
      } else if (a == "--tls-ocsp") {
        std::string v;
        if (!value(a, v)) return false;
        if (c.tlsConfig.certificates.empty()) return fail("option --tls-ocsp must follow its --tls-cert");
        c.tlsConfig.certificates.back().ocspFile = v;
      } else if (a == "--sticky") {
        if (inlineValue) return fail("option --sticky takes no value");
        c.sticky = true;
      } else if (a == "--no-http2") {
        if (inlineValue) return fail("option --no-http2 takes no value");
        c.http2 = Http2::kOff;
      } else if (a == "--h2c") {
        if (inlineValue) return fail("option --h2c takes no value");
        c.http2 = Http2::kH2c;
      } else if (a == "--no-compression") {
        if (inlineValue) return fail("option --no-compression takes no value");
        c.compression = false;
      } else if (a == "--dotfiles") {
        if (inlineValue) return fail("option --dotfiles takes no value");
        c.statics.dotfiles = Dotfiles::kAllow;
      } else if (a == "--fallback" || a == "--not-found") {
        std::string v;
        if (!value(a, v)) return false;
        std::string written = v;
        if (!normaliseRootPath(v)) return fail("option " + a + ": '" + written + "' must be a file's path under the served directory");
        (a == "--fallback" ? c.statics.fallback : c.statics.notFound) = v;
      } else if (a == "--list") {
        if (inlineValue) return fail("option --list takes no value");
        c.statics.listDirectories = true;
      } else if (a == "--respond") {
        std::string v;
        if (!value(a, v)) return false;
        size_t eq = v.find('=');
        if (eq == std::string::npos || eq == 0 || v[0] != '/') {
          return fail("option --respond: '" + v + "' must look like /path=body");
        }
        c.responds.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      } else if (a == "--max-request-line") {
        if (!size(a, c.limits.maxRequestLine, 64, 1 << 20)) return false;
      } else if (a == "--max-field-size") {
        if (!size(a, c.limits.maxFieldSize, 64, 1 << 20)) return false;
      } else if (a == "--max-header-bytes") {
        if (!size(a, c.limits.maxHeaderBytes, 256, 16 << 20)) return false;
        headerBytesSet = true;
      } else if (a == "--max-headers") {
        if (!integer(a, n, 1, 100000)) return false;
        c.limits.maxHeaders = uint32_t(n);
        headersSet = true;
      } else if (a == "--max-body") {
        if (!size(a, c.limits.maxBodyBytes, 0, 1ull << 40)) return false;
        bodySet = true;
      } else if (a == "--header-timeout") {
        if (!duration(a, c.timeouts.headerMs)) return false;
        c.timeouts.headerExplicit = true;
      } else if (a == "--idle-timeout") {
        if (!duration(a, c.timeouts.idleMs)) return false;
      } else if (a == "--body-timeout") {
        if (!duration(a, c.timeouts.bodyMs)) return false;
        c.timeouts.bodyExplicit = true;
      } else if (a == "--shutdown-timeout") {
        if (!duration(a, c.timeouts.shutdownMs)) return false;
      } else if (a == "--cpu-budget") {
        if (!duration(a, c.cpuBudgetMs)) return false;
      } else if (a == "--max-requests") {
        if (!integer(a, n, 1, 100000000)) return false;
        c.maxRequestsPerConnection = uint32_t(n);
      } else if (a == "-e" || a == "--eval" || a == "-p" || a == "--print") {
        if (!value(a, c.eval)) return false;
        c.scriptMode = true;
        c.print = c.print || a == "-p" || a == "--print";
      } else if (a == "-pe" || a == "-ep") {  // node's spelling of -p -e
        if (!value(a, c.eval)) return false;
        c.scriptMode = true;
        c.print = true;
      } else if (a == "-") {
        c.scriptMode = true;
        c.evalStdin = true;
      } else if (a == "-i" || a == "--interactive") {
        if (inlineValue) return fail("option " + a + " takes no value");
        c.repl = true;
        c.scriptMode = true;
      } else if (a == "-c" || a == "--check") {
        if (inlineValue) return fail("option " + a + " takes no value");
        c.checkSyntax = true;
      } else if (a == "-r" || a == "--require") {
        std::string v;
        if (!value(a, v)) return false;
        c.requireModules.push_back(v);
      } else if (a == "--import") {
        std::string v;
        if (!value(a, v)) return false;
        c.imports.push_back(v);
      } else if (a == "--inspect" || a == "--inspect-brk" || a == "--inspect-wait") {
        c.inspect.mode = a == "--inspect"       ? ServerConfig::Inspect::Mode::kOn
                         : a == "--inspect-brk" ? ServerConfig::Inspect::Mode::kBreak
                                                : ServerConfig::Inspect::Mode::kWait;
        if (inlineValue && !inspectAddress(a, *inlineValue)) return false;
        inlineValue.reset();
      } else if (a == "--inspect-port" || a == "--debug-port") {
        std::string v;
        if (!value(a, v)) return false;
        if (!inspectAddress(a, v)) return false;
      } else if (a == "--watch") {
        if (inlineValue) return fail("option --watch takes no value");
        c.watch = true;
      } else if (a == "--watch-path") {
        std::string v;
        if (!value(a, v)) return false;
        c.watch = true;
        c.watchPaths.push_back(v);
      } else if (a == "--watch-preserve-output") {
        // kuai never restarts the process (nothing to clear): accepted as Node's.
      } else if (a == "--") {
        for (++i; i < args.size(); ++i) c.scriptArgs.push_back(args[i]);
        break;
      } else if (a.size() > 1 && a[0] == '-') {
        // Not ours: a Node / V8 option (--max-old-space-size=64, --v8-options),
        // for node's command line, always as one --opt=value word.
        std::string word = args[i];
        if (!inlineValue && nodeOptionTakesValue(a)) {
          std::string v;
          if (!value(a, v)) return false;
          word = a + "=" + v;
        }
        inlineValue.reset();
        c.nodeArgs.push_back(word);
      } else if (positional.empty() && a != "serve") {
        if (c.scriptMode && !c.repl) {  // after -e, the rest are the script's arguments
          for (; i < args.size(); ++i) c.scriptArgs.push_back(args[i]);
          break;
        }
        // The main script; everything after it belongs to the script.
        c.scriptMode = true;
        c.script = a;
        for (++i; i < args.size(); ++i) c.scriptArgs.push_back(args[i]);
        break;
      } else {
        positional.push_back(a);
      }
      if (inlineValue) return fail("option " + a + " takes no value");
    }
    bool scriptOptions = !c.requireModules.empty() || !c.imports.empty() || c.watch || c.checkSyntax ||
                         c.inspect.mode != ServerConfig::Inspect::Mode::kOff;
    if (!configFlag.empty()) {
      // The file describes the site; options given here override it (see
      // site_config.h). No DIR, no script.
      if (c.scriptMode) {
        return fail("option " + configFlag + " cannot be used with a script (use an app route in the config file)");
      }
      if (!positional.empty()) {
        return fail("option " + configFlag + " cannot be used with '" + positional.front() +
                    "' (use a static route in the config file)");
      }
      if (!c.nodeArgs.empty()) return fail("unknown option '" + c.nodeArgs.front() + "' (see kuai --help)");
      if (scriptOptions) return fail("options -r, --import, --inspect and --watch are for scripts, not " + configFlag);
      for (const auto& cert : c.tlsConfig.certificates) {
        if (cert.keyFile.empty()) return fail("--tls-cert " + cert.certFile + " has no --tls-key");
      }
      c.tls = !c.tlsConfig.certificates.empty();
      result.action = CliResult::Action::kServe;
      return true;
    }
    if (c.checkSyntax) {
      if (c.script.empty()) return fail("option -c/--check needs a script: kuai -c app.js");
      result.action = CliResult::Action::kScript;
      return true;
    }
    if (c.scriptMode) {
      if (c.watch && c.script.empty()) return fail("option --watch needs a script: kuai --watch app.js");
      // Scripts get Node's limits unless told otherwise: no cap on a body
      // (it streams, with backpressure), 16 KiB of header fields in any number
      // (server.maxHeadersCount keeps the first 2000, as Node does).
      if (!bodySet) c.limits.maxBodyBytes = kUnlimitedBody;
      if (!headerBytesSet) c.limits.maxHeaderBytes = 16 * 1024;
      if (!headersSet) c.limits.maxHeaders = 100000;
      result.action = CliResult::Action::kScript;
      return true;
    }
    for (const std::string& o : c.nodeArgs) {
      if (o == "--v8-options") {
        c.scriptMode = true;
        result.action = CliResult::Action::kScript;
        return true;
      }
    }
    if (!c.nodeArgs.empty()) {
      return fail("unknown option '" + c.nodeArgs.front() + "' (see kuai --help)");
    }
    if (positional.empty()) {
      if (scriptOptions) return fail("nothing to run: give a script (kuai [options] app.js)");
      return fail("nothing to do: try 'kuai serve DIR' or 'kuai app.js' (see kuai --help)");
    }
    if (scriptOptions) {
      return fail("options -r, --import, --inspect and --watch are for scripts, not 'kuai serve'");
    }
    if (positional.size() != 2) return fail("usage: kuai serve DIR [options]");
    for (const auto& cert : c.tlsConfig.certificates) {
      if (cert.keyFile.empty()) return fail("--tls-cert " + cert.certFile + " has no --tls-key");
    }
    c.tls = !c.tlsConfig.certificates.empty();
    c.serveStatic = true;
    c.statics.root = positional[1];
    result.action = CliResult::Action::kServe;
    return true;
  }
};

}  // namespace

CliResult parseCommandLine(const std::vector<std::string>& args) {
  Parser p(args);
  p.run();
  return std::move(p.result);
}

}  // namespace kuai::server
