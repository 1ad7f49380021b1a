#include "server/proxy.h"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <mutex>

#include "parser/response_parser.h"

namespace kuai::server {

namespace {

using parser::equalsIgnoreCase;

bool isIdempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" || m == "OPTIONS" ||
         m == "TRACE";
}

// Hop-by-hop fields (RFC 9110 §7.6.1) and the ones kuai writes itself.
bool isHopByHop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return equalsIgnoreCase(n, "te");
    case 7:
      return equalsIgnoreCase(n, "trailer") || equalsIgnoreCase(n, "upgrade");
    case 10:
      return equalsIgnoreCase(n, "connection") || equalsIgnoreCase(n, "keep-alive");
    case 16:
      return equalsIgnoreCase(n, "proxy-connection");
    case 17:
      return equalsIgnoreCase(n, "transfer-encoding");
    default:
      return false;
  }
}

// Whether `name` is one of the comma-separated tokens of a Connection field.
bool listedIn(std::string_view connection, std::string_view name) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    std::string_view tok = connection.substr(0, comma);
    while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
    while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
    if (equalsIgnoreCase(tok, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

void appendLine(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ", 2).append(value).append("\r\n", 2);
}

const char* errnoName(int err) {
  switch (err) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EPIPE: return "EPIPE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ECANCELED: return "ECANCELED";
    default: return "EIO";
  }
}

std::mutex gMetricsMutex;
std::vector<UpstreamMetric>& metricsRegistry() {
  static std::vector<UpstreamMetric> all;
  return all;
}

}  // namespace

std::vector<UpstreamMetric> upstreamMetrics() {
  std::lock_guard<std::mutex> lock(gMetricsMutex);
  return metricsRegistry();
}

// ---------------------------------------------------------------------------
// One upstream connection: in the pool (call == null) or carrying a request.
class UpstreamConn final : public Protocol, public parser::ResponseParser::Handler {
 public:
  UpstreamConn(ProxyRoute& route, ProxyRoute::Upstream& up, const parser::Limits& limits)
      : route(route), up(&up), parser(*this, limits) {}

  // Protocol (the transport's callbacks).
  void onConnect(int err) override;
  void onData(const char* data, size_t len) override;
  void onEof() override { onClosed(0); }
  void onError(int err) override { onClosed(err); }
  void onDrained() override;
  void onClosed(int err);
  void onHeaders(const parser::Response& resp) override;
  void onBody(std::string_view chunk) override;
  void onComplete(const parser::Response& resp) override;

  ProxyRoute& route;
  ProxyRoute::Upstream* up;
  Transport* sock = nullptr;
  parser::ResponseParser parser;
  ProxyCall* call = nullptr;
  uint32_t requests = 0;   // completed on this connection
  uint64_t idleSince = 0;
  bool connected = false;
};

// A client connection as the downstream: the upstream's head is passed on
// without its hop-by-hop fields, errors become 502/504 pages.
class ExchangeDownstream final : public Downstream {
 public:
  explicit ExchangeDownstream(std::shared_ptr<Exchange> ex) : ex_(std::move(ex)) {}

  bool valid() const override { return ex_->valid(); }
  bool headersSent() const override { return ex_->headersSent(); }
  void head(const parser::Response& resp) override {
    std::string lines;
    filteredLines(resp, lines);
    int64_t length = resp.contentLength >= 0 && !resp.chunked ? resp.contentLength : -1;
    ex_->writeHead(resp.status, resp.reason, lines, length, Exchange::kNoKeepAliveHeader);
  }
  void upgrade(const parser::Response& resp) override {
    std::string lines;
    filteredLines(resp, lines);
    lines.append("Connection: Upgrade\r\n");
    appendLine(lines, "Upgrade", resp.header("upgrade"));
    ex_->acceptUpgrade(lines);
  }
  bool write(std::string_view bytes) override { return ex_->write(bytes); }
  void end() override { ex_->end(); }
  void abort() override { ex_->abort(); }
  void fail(int status, const char*) override { ex_->writeError(status); }
  void pauseBody() override { ex_->pauseBody(); }
  void resumeBody() override { ex_->resumeBody(); }
  void detach() override { ex_->setListener(nullptr); }

 private:
  static void filteredLines(const parser::Response& resp, std::string& lines) {
    lines.reserve(256);
    std::string_view connection = resp.header("connection");
    for (const parser::Header& f : resp.headers) {
      std::string_view n = f.name;
      if (isHopByHop(n)) continue;
      if (!connection.empty() && listedIn(connection, n)) continue;
      if (n.size() == 4 && equalsIgnoreCase(n, "date")) continue;  // kuai writes its own
      if (n.size() == 14 && equalsIgnoreCase(n, "content-length")) continue;
      appendLine(lines, n, f.value);
    }
  }

  std::shared_ptr<Exchange> ex_;
};

// ---------------------------------------------------------------------------
// One proxied request, from the client's head to the upstream's last byte.
class ProxyCall final : public ExchangeListener {
 public:
  enum class Phase : uint8_t { kConnecting, kWaiting, kStreaming, kTunnel, kDone };

  ProxyCall(std::shared_ptr<ProxyRoute> route, std::shared_ptr<Downstream> down)
      : route_(std::move(route)), ex_(std::move(down)) {}

  // A client's request, its head rewritten for the upstream.
  void start(const parser::Request& req, const Exchange& ex);
  // A request built elsewhere.
  void startOutbound(OutboundRequest req);
  void onTick(uint64_t now);

  // From the upstream connection.
  void connected();
  void connectFailed(int err);
  void upstreamBytes();
  void upstreamHead(const parser::Response& resp);
  void upstreamBody(std::string_view chunk);
  void upstreamComplete(const parser::Response& resp);
  void upstreamEof(int err);
  void upstreamDrained();
  void afterFeed(parser::ResponseParser::Result r, const char* data, size_t len);
  bool tunneling() const { return phase_ == Phase::kTunnel; }
  void tunnelData(const char* data, size_t len);

  // ExchangeListener (the client's side).
  void onBody(std::string_view chunk) override;
  void onBodyEnd() override;
  void onAbort() override;
  void onDrain() override;
  void onFinish() override {}

 private:
  void attempt(OutputQueue* queued = nullptr, int noneLeft = 502);
  // Error answer (or abort when the head is out) and done; `why` says what
  // happened, with the errno name where there is one ("connect: ECONNREFUSED").
  void giveUp(int status, std::string why);
  void endTunnel();
  void finish(bool reusable);
  void dropConn(bool failure);
  uint64_t now() const { return route_->reactor().nowMs(); }

  std::shared_ptr<ProxyRoute> route_;
  std::shared_ptr<Downstream> ex_;
  UpstreamConn* conn_ = nullptr;
  // What went upstream so far (head, then body bytes as framed), kept while
  // it is small enough to send again to another upstream.
  std::string head_;
  bool replayable_ = true;
  static constexpr size_t kReplayMax = 64 * 1024;
  Phase phase_ = Phase::kConnecting;
  uint64_t tried_ = 0;      // upstream indexes tried
  uint32_t attempts_ = 0;
  uint64_t deadline_ = 0;   // 0: none (waiting for the client)
  bool isHead_ = false;
  bool hasBody_ = false;
  bool chunkedBody_ = false;
  bool bodyDone_ = false;
  bool bodyStarted_ = false;  // body bytes went to an upstream connection
  bool idempotent_ = false;
  bool gotByte_ = false;       // any response byte from the current upstream
  bool responseComplete_ = false;
  bool bodyPaused_ = false;    // client body paused: upstream not keeping up
  bool upstreamPaused_ = false;  // upstream reads paused: client not keeping up
  bool upstreamKeepAlive_ = true;
  bool upgrade_ = false;       // the client asked for a protocol switch
  std::string lastError_;      // why the last try failed

  friend class ProxyRoute;
};

// ---------------------------------------------------------------------------
// UpstreamConn

void UpstreamConn::onConnect(int err) {
  if (err == 0) {
    connected = true;
    if (call) call->connected();
    return;
  }
  if (call) {
    call->connectFailed(err);
  } else {
    route.dropIdle(this);
  }
}

void UpstreamConn::onData(const char* data, size_t len) {
  if (!call) {
    // Bytes on an idle connection: nothing was asked; it cannot be trusted.
    route.dropIdle(this);
    return;
  }
  ProxyCall* c = call;
  c->upstreamBytes();
  if (c->tunneling()) {
    c->tunnelData(data, len);
    return;
  }
  auto r = parser.feed(data, len);
  c->afterFeed(r, data, len);
}

// The upstream closed (err 0) or the connection failed (a negative errno).
void UpstreamConn::onClosed(int err) {
  if (!call) {
    route.dropIdle(this);
    return;
  }
  call->upstreamEof(err);
}

void UpstreamConn::onDrained() {
  if (call) call->upstreamDrained();
}

void UpstreamConn::onHeaders(const parser::Response& resp) {
  if (call) call->upstreamHead(resp);
}

void UpstreamConn::onBody(std::string_view chunk) {
  if (call) call->upstreamBody(chunk);
}

void UpstreamConn::onComplete(const parser::Response& resp) {
  if (call) call->upstreamComplete(resp);
}

// ---------------------------------------------------------------------------
// ProxyCall

void ProxyCall::startOutbound(OutboundRequest req) {
  head_ = std::move(req.head);
  isHead_ = req.isHead;
  idempotent_ = req.idempotent;
  hasBody_ = req.hasBody;
  chunkedBody_ = req.chunked;
  upgrade_ = req.upgrade;
  attempt();
}

void ProxyCall::start(const parser::Request& req, const Exchange& ex) {
  const ProxySpec& spec = route_->spec();
  isHead_ = req.isHead;
  idempotent_ = isIdempotent(req.method);
  hasBody_ = req.contentLength > 0 || req.chunked;
  chunkedBody_ = req.chunked;

  // Request line: the target with the route's prefix taken off when asked.
  std::string& h = head_;
  h.reserve(256 + req.target.size());
  h.append(req.method).push_back(' ');
  std::string_view target = req.target;
  if (spec.stripPrefix && !route_->route().exact) {
    std::string_view prefix = route_->route().path;
    if (prefix.size() > 1 && prefix.back() == '/') prefix.remove_suffix(1);
    if (target.substr(0, prefix.size()) == prefix) target.remove_prefix(prefix.size());
    if (target.empty() || target.front() != '/') h.push_back('/');
  }
  h.append(target).append(" HTTP/1.1\r\n");

  std::string_view connection = req.header("connection");
  std::string_view forwardedFor;
  std::string_view via;
  for (const parser::Header& f : req.headers) {
    std::string_view n = f.name;
    if (isHopByHop(n)) continue;
    if (!connection.empty() && listedIn(connection, n)) continue;
    switch (n.size()) {
      case 3:
        if (equalsIgnoreCase(n, "via")) {
          via = f.value;
          continue;
        }
        break;
      case 4:
        if (equalsIgnoreCase(n, "host")) continue;
        break;
      case 6:
        // kuai answered 100-continue itself; the body follows at once.
        if (equalsIgnoreCase(n, "expect")) continue;
        break;
      case 14:
        if (equalsIgnoreCase(n, "content-length")) continue;
        break;
      case 15:
        if (equalsIgnoreCase(n, "x-forwarded-for")) {
          forwardedFor = f.value;
          continue;
        }
        break;
      case 16:
        if (equalsIgnoreCase(n, "x-forwarded-host")) continue;
        break;
      case 17:
        if (equalsIgnoreCase(n, "x-forwarded-proto")) continue;
        break;
      default:
        break;
    }
    appendLine(h, n, f.value);
  }
  std::string_view host = spec.hostRewrite.empty() ? req.host : std::string_view(spec.hostRewrite);
  if (host.empty()) host = spec.upstreams.front().name;  // HTTP/1.0 without Host
  appendLine(h, "Host", host);
  std::string xff(forwardedFor);
  if (!xff.empty()) xff.append(", ");
  xff.append(ex.remoteAddress());
  appendLine(h, "X-Forwarded-For", xff);
  appendLine(h, "X-Forwarded-Proto", ex.encrypted() ? "https" : "http");
  if (!req.host.empty()) appendLine(h, "X-Forwarded-Host", req.host);
  std::string v(via);
  if (!v.empty()) v.append(", ");
  v.append(req.versionMinor == 0 ? "1.0 kuai" : "1.1 kuai");
  appendLine(h, "Via", v);
  if (req.contentLength >= 0 && !req.chunked) {
    char num[24];
    auto [end, ec] = std::to_chars(num, num + sizeof(num), uint64_t(req.contentLength));
    appendLine(h, "Content-Length", std::string_view(num, size_t(end - num)));
  } else if (req.chunked) {
    h.append("Transfer-Encoding: chunked\r\n");
  }
  if (req.upgrade) {
    // A protocol switch (WebSocket): asked of the upstream, tunnelled on 101.
    h.append("Connection: Upgrade\r\n");
    appendLine(h, "Upgrade", req.header("upgrade"));
    upgrade_ = true;
  }
  h.append("\r\n");
  attempt();
}

// Sends the request to the next upstream not tried yet: its head (and the
// body so far) from head_, or `queued`, the untouched output of a connect that
// failed. No upstream left: gives up with `noneLeft`.
void ProxyCall::attempt(OutputQueue* queued, int noneLeft) {
  ProxyRoute::Upstream* up = route_->pick(tried_);
  if (!up) {
    giveUp(noneLeft, lastError_.empty() ? "no upstream available" : lastError_);
    return;
  }
  tried_ |= uint64_t(1) << (route_->indexOf(up) & 63);
  ++attempts_;
  int err = 0;
  UpstreamConn* c = route_->acquire(up, err);
  if (!c) {
    route_->failed(up);
    giveUp(502, std::string("socket: ") + errnoName(err));
    return;
  }
  conn_ = c;
  c->call = this;
  c->parser.reset(isHead_);
  gotByte_ = false;
  if (queued) {
    c->sock->output() = std::move(*queued);
  } else {
    c->sock->output().buffer().append(head_);
  }
  c->sock->flush();
  const ProxySpec& spec = route_->spec();
  if (c->connected) {
    phase_ = Phase::kWaiting;
    deadline_ = now() + spec.readTimeoutMs;
  } else {
    phase_ = Phase::kConnecting;
    deadline_ = now() + spec.connectTimeoutMs;
  }
}

void ProxyCall::connected() {
  phase_ = Phase::kWaiting;
  deadline_ = now() + route_->spec().readTimeoutMs;
}

void ProxyCall::connectFailed(int err) {
  // Nothing reached the upstream: any request may go to another one, its
  // queued bytes (head and body so far) moving along.
  UpstreamConn* c = conn_;
  lastError_ = std::string("connect: ") + errnoName(-err);
  OutputQueue queued = std::move(c->sock->output());
  route_->failed(c->up);
  dropConn(true);
  int status = err == -ETIMEDOUT ? 504 : 502;
  if (attempts_ <= route_->spec().retries) {
    attempt(&queued, status);
    return;
  }
  giveUp(status, lastError_);
}

void ProxyCall::upstreamBytes() {
  gotByte_ = true;
  if (phase_ != Phase::kDone && !upstreamPaused_) deadline_ = now() + route_->spec().readTimeoutMs;
}

void ProxyCall::upstreamHead(const parser::Response& resp) {
  if (resp.status < 200 && resp.status != 101) return;  // interim: kuai sent its own 100
  if (!ex_->valid()) return;
  if (resp.status == 101 && !upgrade_) return;  // not asked for: afterFeed fails it
  phase_ = resp.status == 101 ? Phase::kTunnel : Phase::kStreaming;
  if (phase_ == Phase::kTunnel) {
    ex_->upgrade(resp);
    deadline_ = now() + route_->spec().readTimeoutMs;
    return;
  }
  ex_->head(resp);
}

void ProxyCall::upstreamBody(std::string_view chunk) {
  if (!ex_->valid()) return;
  if (!ex_->write(chunk) && !upstreamPaused_) {
    // The client is slower than the upstream: stop reading it until 'drain'.
    upstreamPaused_ = true;
    deadline_ = 0;
    conn_->sock->setReadPaused(true);
  }
}

void ProxyCall::upstreamComplete(const parser::Response& resp) {
  if (resp.status < 200 && resp.status != 101) return;
  responseComplete_ = true;
  upstreamKeepAlive_ = resp.keepAlive;
}

void ProxyCall::tunnelData(const char* data, size_t len) {
  if (!ex_->valid()) return;
  deadline_ = now() + route_->spec().readTimeoutMs;
  if (!ex_->write({data, len}) && !upstreamPaused_) {
    upstreamPaused_ = true;
    conn_->sock->setReadPaused(true);
  }
}

void ProxyCall::afterFeed(parser::ResponseParser::Result r, const char* data, size_t len) {
  if (phase_ == Phase::kDone) return;
  if (r == parser::ResponseParser::Result::kUpgrade) {
    if (phase_ != Phase::kTunnel) {
      giveUp(502, "malformed response: an unasked protocol switch");
      return;
    }
    size_t used = conn_->parser.upgradeOffset();
    if (used < len) tunnelData(data + used, len - used);
    return;
  }
  if (r == parser::ResponseParser::Result::kError) {
    // Malformed: the connection cannot be reused whatever came before.
    route_->failed(conn_->up);
    if (responseComplete_) {
      if (ex_->valid()) ex_->end();
      finish(false);
      return;
    }
    giveUp(502, std::string("malformed response: ") + conn_->parser.error().reason);
    return;
  }
  if (responseComplete_) {
    if (ex_->valid()) ex_->end();
    Transport* s = conn_->sock;
    bool reusable = upstreamKeepAlive_ && bodyDone_ && s->output().empty() &&
                    !conn_->parser.midMessage() &&
                    conn_->requests + 1 < route_->spec().maxRequestsPerConnection;
    route_->succeeded(conn_->up);
    finish(reusable);
  }
}

void ProxyCall::upstreamEof(int err) {
  if (phase_ == Phase::kDone) return;
  UpstreamConn* c = conn_;
  if (phase_ == Phase::kTunnel) {
    endTunnel();
    return;
  }
  if (phase_ == Phase::kStreaming || (gotByte_ && err == 0)) {
    // A body that runs to the connection's end is complete now.
    auto r = c->parser.finish();
    if (r != parser::ResponseParser::Result::kError && responseComplete_) {
      if (ex_->valid()) ex_->end();
      route_->succeeded(c->up);
      finish(false);
      return;
    }
    route_->failed(c->up);
    giveUp(502, std::string("malformed response: ") + c->parser.error().reason);
    return;
  }
  if (!gotByte_) {
    // Reset or closed before any response byte.
    bool reused = c->requests > 0;
    lastError_ = err ? std::string("reset: ") + errnoName(-err) : "reset: closed before a response";
    dropConn(!reused);
    if (!reused) route_->failed(c->up);
    const ProxySpec& spec = route_->spec();
    bool retry = idempotent_ && replayable_ && (attempts_ <= spec.retries || reused);
    if (retry) {
      if (reused) tried_ &= ~(uint64_t(1) << (route_->indexOf(c->up) & 63));
      attempt();  // gives up itself when no upstream is left
      return;
    }
    giveUp(502, lastError_);
    return;
  }
  route_->failed(c->up);
  giveUp(502, err ? std::string("reset: ") + errnoName(-err) : "reset: truncated head");
}

void ProxyCall::upstreamDrained() {
  if (bodyPaused_) {
    bodyPaused_ = false;
    if (ex_->valid()) ex_->resumeBody();
  }
  if (phase_ == Phase::kWaiting) deadline_ = now() + route_->spec().readTimeoutMs;
}

void ProxyCall::onBody(std::string_view chunk) {
  if (!conn_ || phase_ == Phase::kDone) return;
  bodyStarted_ = true;
  std::string& b = conn_->sock->output().buffer();
  size_t from = b.size();
  if (chunkedBody_) {
    char hex[20];
    int n = std::snprintf(hex, sizeof(hex), "%zx\r\n", chunk.size());
    b.append(hex, size_t(n)).append(chunk).append("\r\n", 2);
  } else {
    b.append(chunk);
  }
  if (replayable_ && phase_ != Phase::kTunnel) {
    if (head_.size() + (b.size() - from) > kReplayMax) {
      replayable_ = false;
      head_.clear();
      head_.shrink_to_fit();
    } else {
      head_.append(b, from);
    }
  }
  conn_->sock->flush();
  constexpr size_t kHighWater = 256 * 1024;
  if (!bodyPaused_ && conn_->sock->output().bytes() >= kHighWater) {
    bodyPaused_ = true;
    ex_->pauseBody();
  }
  if (phase_ == Phase::kWaiting) deadline_ = now() + route_->spec().sendTimeoutMs;
  if (phase_ == Phase::kTunnel) deadline_ = now() + route_->spec().readTimeoutMs;
}

void ProxyCall::endTunnel() {
  // Either side closed: what is queued to the client goes out, then both close.
  if (conn_) dropConn(false);
  phase_ = Phase::kDone;
  if (ex_->valid()) ex_->abort();
  route_->callDone(this);
}

void ProxyCall::onBodyEnd() {
  if (phase_ == Phase::kTunnel) {
    endTunnel();
    return;
  }
  bodyDone_ = true;
  if (!conn_ || phase_ == Phase::kDone) return;
  if (chunkedBody_) {
    conn_->sock->output().buffer().append("0\r\n\r\n", 5);
    if (replayable_) head_.append("0\r\n\r\n", 5);
    conn_->sock->flush();
  }
}

void ProxyCall::onAbort() {
  // The client went away: the upstream connection is mid-exchange, close it.
  if (phase_ == Phase::kDone) return;
  if (conn_) dropConn(false);
  phase_ = Phase::kDone;
  route_->callDone(this);
}

void ProxyCall::onDrain() {
  if (upstreamPaused_ && conn_) {
    upstreamPaused_ = false;
    conn_->sock->setReadPaused(false);
    deadline_ = now() + route_->spec().readTimeoutMs;
  }
}

void ProxyCall::onTick(uint64_t t) {
  if (phase_ == Phase::kDone || deadline_ == 0 || t < deadline_) return;
  switch (phase_) {
    case Phase::kConnecting: {
      // Connect timeout: as a failed connect (another upstream may answer).
      connectFailed(-ETIMEDOUT);
      return;
    }
    case Phase::kWaiting:
      route_->failed(conn_->up);
      giveUp(504, "timeout: no response within readTimeout");
      return;
    case Phase::kStreaming:
      route_->failed(conn_->up);
      giveUp(504, "timeout: response stalled");  // head already out: aborts it
      return;
    case Phase::kTunnel:
      endTunnel();  // idle for readTimeout both ways
      return;
    case Phase::kDone:
      return;
  }
}

void ProxyCall::giveUp(int status, std::string why) {
  if (phase_ == Phase::kDone) return;
  if (conn_) dropConn(false);
  phase_ = Phase::kDone;
  if (ex_->valid()) {
    if (ex_->headersSent()) {
      ex_->abort();
    } else {
      ex_->fail(status, why.c_str());
    }
  }
  route_->callDone(this);
}

void ProxyCall::finish(bool reusable) {
  UpstreamConn* c = conn_;
  conn_ = nullptr;
  phase_ = Phase::kDone;
  if (c) {
    if (upstreamPaused_) c->sock->setReadPaused(false);
    route_->release(c, reusable);
  }
  route_->callDone(this);
}

void ProxyCall::dropConn(bool) {
  UpstreamConn* c = conn_;
  conn_ = nullptr;
  if (c) route_->release(c, false);
}

// ---------------------------------------------------------------------------
// Active health check: GET healthCheck.path on a fresh connection; a 2xx or
// 3xx within the timeout is healthy.
class HealthProbe final : public Protocol, public parser::ResponseParser::Handler {
 public:
  HealthProbe(ProxyRoute& route, ProxyRoute::Upstream& up, const parser::Limits& limits)
      : route_(route), up_(up), parser_(*this, limits) {}
  ~HealthProbe() override {
    if (sock_) sock_->close();
  }

  bool start(uint64_t now) {
    const HealthCheckSpec& h = route_.spec().health;
    deadline_ = now + h.timeoutMs;
    int err = 0;
    sock_ = route_.reactor().connect(reinterpret_cast<const sockaddr*>(&up_.spec->addr), up_.spec->addrLen, this,
                                     err);
    if (!sock_) return false;
    std::string& b = sock_->output().buffer();
    b.append("GET ").append(h.path).append(" HTTP/1.1\r\nHost: ").append(up_.spec->name);
    b.append("\r\nUser-Agent: kuai-health-check\r\nConnection: close\r\n\r\n");
    parser_.reset(false);
    sock_->flush();
    return true;
  }
  // Called on every tick: a probe past its deadline has failed.
  void check(uint64_t now) {
    if (now >= deadline_) result(false);
  }

  void onConnect(int err) override {
    if (err) result(false);
  }
  void onData(const char* data, size_t len) override {
    if (parser_.feed(data, len) == parser::ResponseParser::Result::kError) result(false);
  }
  void onEof() override {
    parser_.finish();
    result(false);  // a complete response has already decided
  }
  void onError(int) override { onEof(); }
  void onDrained() override {}
  void onHeaders(const parser::Response& resp) override {
    if (!resp.interim()) status_ = resp.status;
  }
  void onBody(std::string_view) override {}
  void onComplete(const parser::Response& resp) override {
    if (!resp.interim()) result(status_ >= 200 && status_ < 400);
  }

 private:
  void result(bool healthy) {
    if (done_) return;
    done_ = true;
    sock_->close();
    sock_ = nullptr;
    route_.probeDone(&up_, healthy);  // deletes this probe (later)
  }

  ProxyRoute& route_;
  ProxyRoute::Upstream& up_;
  parser::ResponseParser parser_;
  Transport* sock_ = nullptr;
  uint64_t deadline_ = 0;
  int status_ = 0;
  bool done_ = false;
};

// ---------------------------------------------------------------------------
// ProxyRoute

std::shared_ptr<ProxyRoute> ProxyRoute::create(Reactor& reactor, std::shared_ptr<const Site> site,
                                               const RouteSpec& route) {
  return std::make_shared<ProxyRoute>(reactor, std::move(site), route);
}

ProxyRoute::ProxyRoute(Reactor& reactor, std::shared_ptr<const Site> site, const RouteSpec& route)
    : reactor_(reactor), site_(std::move(site)), route_(route), spec_(route.proxy) {
  upstreams_.resize(spec_->upstreams.size());
  std::lock_guard<std::mutex> lock(gMetricsMutex);
  for (size_t i = 0; i < upstreams_.size(); ++i) {
    upstreams_[i].spec = &spec_->upstreams[i];
    upstreams_[i].counters = std::make_shared<UpstreamCounters>();
    metricsRegistry().push_back({route.path, spec_->upstreams[i].name, upstreams_[i].counters});
  }
  reactor_.addTicker(this);
}

ProxyRoute::~ProxyRoute() {
  reactor_.removeTicker(this);
  for (Upstream& u : upstreams_) {
    if (!u.probe) continue;
    delete u.probe;  // its socket: closed with the reactor's, or below
    u.probe = nullptr;
  }
  for (Upstream& u : upstreams_) {
    for (UpstreamConn* c : u.idle) {
      c->sock->close();
      delete c;
    }
    u.idle.clear();
  }
  std::lock_guard<std::mutex> lock(gMetricsMutex);
  auto& all = metricsRegistry();
  for (Upstream& u : upstreams_) {
    std::erase_if(all, [&](const UpstreamMetric& m) { return m.counters == u.counters; });
  }
}

void ProxyRoute::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  auto* call = new ProxyCall(shared_from_this(), std::make_shared<ExchangeDownstream>(ex));
  ex->setListener(call);
  calls_.push_back(call);
  call->start(req, *ex);
}

ExchangeListener* ProxyRoute::startCall(std::shared_ptr<Downstream> down, OutboundRequest req) {
  auto* call = new ProxyCall(shared_from_this(), std::move(down));
  calls_.push_back(call);
  call->startOutbound(std::move(req));
  return call;
}

ProxyRoute::Upstream* ProxyRoute::pick(uint64_t tried) {
  const uint64_t now = reactor_.nowMs();
  size_t n = upstreams_.size();
  auto usable = [&](size_t i) {
    const Upstream& u = upstreams_[i];
    return !(tried & (uint64_t(1) << (i & 63))) && u.downUntil <= now && !u.probeFailed;
  };
  Upstream* best = nullptr;
  switch (spec_->balance) {
    case Balance::kRoundRobin:
      for (size_t k = 0; k < n; ++k) {
        size_t i = (rr_ + k) % n;
        if (usable(i)) {
          rr_ = i + 1;
          best = &upstreams_[i];
          break;
        }
      }
      break;
    case Balance::kLeastConn: {
      // Fewest active connections per unit of weight; ties go round the ring.
      for (size_t k = 0; k < n; ++k) {
        size_t i = (rr_ + k) % n;
        if (!usable(i)) continue;
        Upstream& u = upstreams_[i];
        if (!best || uint64_t(u.active) * best->spec->weight <
                         uint64_t(best->active) * u.spec->weight) {
          best = &u;
        }
      }
      if (best) rr_ = indexOf(best) + 1;
      break;
    }
    case Balance::kWeighted: {
      // Smooth weighted round-robin: each pick raises every candidate by its
      // weight and lowers the chosen one by the total.
      int64_t total = 0;
      for (size_t i = 0; i < n; ++i) {
        if (!usable(i)) continue;
        Upstream& u = upstreams_[i];
        u.currentWeight += u.spec->weight;
        total += u.spec->weight;
        if (!best || u.currentWeight > best->currentWeight) best = &u;
      }
      if (best) best->currentWeight -= total;
      break;
    }
  }
  if (best || tried != 0) return best;
  // Every upstream is marked down: try the one whose mark ends first rather
  // than refuse outright (a single upstream would otherwise stay dark).
  for (Upstream& u : upstreams_) {
    if (!best || u.downUntil < best->downUntil) best = &u;
  }
  return best;
}

UpstreamConn* ProxyRoute::acquire(Upstream* u, int& err) {
  if (!u->idle.empty()) {
    UpstreamConn* c = u->idle.back();
    u->idle.pop_back();
    ++u->active;
    u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
    u->counters->active.store(u->active, std::memory_order_relaxed);
    u->counters->requests.fetch_add(1, std::memory_order_relaxed);
    return c;
  }
  auto* c = new UpstreamConn(*this, *u, reactor_.config().limits);
  c->sock = reactor_.connect(reinterpret_cast<const sockaddr*>(&u->spec->addr), u->spec->addrLen, c, err);
  if (!c->sock) {
    delete c;
    return nullptr;
  }
  ++u->open;
  ++u->active;
  u->counters->connects.fetch_add(1, std::memory_order_relaxed);
  u->counters->active.store(u->active, std::memory_order_relaxed);
  u->counters->requests.fetch_add(1, std::memory_order_relaxed);
  return c;
}

void ProxyRoute::release(UpstreamConn* c, bool reusable) {
  Upstream* u = c->up;
  c->call = nullptr;
  --u->active;
  u->counters->active.store(u->active, std::memory_order_relaxed);
  if (reusable && !c->sock->readPaused() && u->idle.size() < spec_->maxIdle && !reactor_.draining()) {
    ++c->requests;
    c->idleSince = reactor_.nowMs();
    u->idle.push_back(c);
    u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
    return;
  }
  --u->open;
  c->sock->close();
  c->sock = nullptr;
  reactor_.later([](void* p) { delete static_cast<UpstreamConn*>(p); }, c);
}

void ProxyRoute::dropIdle(UpstreamConn* c) {
  Upstream* u = c->up;
  std::erase(u->idle, c);
  u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
  --u->open;
  c->sock->close();
  c->sock = nullptr;
  reactor_.later([](void* p) { delete static_cast<UpstreamConn*>(p); }, c);
}

void ProxyRoute::failed(Upstream* u) {
  u->counters->failures.fetch_add(1, std::memory_order_relaxed);
  if (++u->fails >= spec_->maxFails && spec_->maxFails > 0) {
    u->downUntil = reactor_.nowMs() + spec_->failTimeoutMs;
    u->fails = 0;
    u->counters->down.store(1, std::memory_order_relaxed);
  }
}

void ProxyRoute::succeeded(Upstream* u) {
  u->fails = 0;
  if (u->downUntil) {
    u->downUntil = 0;
    u->counters->down.store(u->probeFailed ? 1 : 0, std::memory_order_relaxed);
  }
}

void ProxyRoute::callDone(ProxyCall* call) {
  std::erase(calls_, call);
  if (call->ex_) call->ex_->detach();
  reactor_.later([](void* p) { delete static_cast<ProxyCall*>(p); }, call);
}

void ProxyRoute::probeDone(Upstream* u, bool healthy) {
  if (u->probe) {
    reactor_.later([](void* p) { delete static_cast<HealthProbe*>(p); }, u->probe);
    u->probe = nullptr;
  }
  u->nextProbeMs = reactor_.nowMs() + spec_->health.intervalMs;
  if (u->probeFailed != !healthy) {
    std::fprintf(stderr, "kuai: upstream %s is %s (health check %s)\n", u->spec->name.c_str(),
                 healthy ? "up" : "down", spec_->health.path.c_str());
  }
  u->probeFailed = !healthy;
  u->counters->down.store(!healthy || u->downUntil > reactor_.nowMs() ? 1 : 0,
                          std::memory_order_relaxed);
}

void ProxyRoute::onTick(uint64_t now) {
  // Deadlines of requests in flight (a call may finish, and leave, here).
  std::vector<ProxyCall*> calls = calls_;
  for (ProxyCall* c : calls) c->onTick(now);
  // Idle connections past their time (oldest first in each pool).
  for (Upstream& u : upstreams_) {
    while (!u.idle.empty() && now - u.idle.front()->idleSince >= spec_->idleTimeoutMs) {
      dropIdle(u.idle.front());
    }
    if (u.downUntil && u.downUntil <= now) {
      u.downUntil = 0;
      u.counters->down.store(u.probeFailed ? 1 : 0, std::memory_order_relaxed);
    }
    if (!spec_->health.enabled || reactor_.draining()) continue;
    if (u.probe) {
      u.probe->check(now);
    } else if (now >= u.nextProbeMs) {
      u.probe = new HealthProbe(*this, u, reactor_.config().limits);
      if (!u.probe->start(now)) probeDone(&u, false);
    }
  }
}

}  // namespace kuai::server
