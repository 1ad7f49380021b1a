#include "server/proxy_call.h"

#include <cerrno>
#include <charconv>
#include <cstdio>

#include "server/header_lines.h"
#include "server/transport.h"
#include "server/upstream_conn.h"

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

// A trailer section's field lines as a proxy passes them on: "Name:
// value\r\n" each, the value without its optional whitespace, and without
// the hop-by-hop fields, framing and Host.
std::string forwardedTrailers(std::string_view raw) {
  std::string out;
  forEachHeaderLine(raw, [&](std::string_view name, std::string_view value, std::string_view) {
    if (name.empty() || isHopByHop(name) || equalsIgnoreCase(name, "content-length") ||
        equalsIgnoreCase(name, "host")) {
      return;
    }
    appendLine(out, name, value);
  });
  return out;
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
  void trailers(std::string_view lines) override {
    std::string kept = forwardedTrailers(lines);
    if (!kept.empty()) ex_->setTrailers(std::move(kept));
  }
  std::string requestTrailers() const override { return forwardedTrailers(ex_->requestTrailers()); }

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

}  // namespace

std::shared_ptr<Downstream> exchangeDownstream(std::shared_ptr<Exchange> ex) {
  return std::make_shared<ExchangeDownstream>(std::move(ex));
}

void ProxyCall::startOutbound(OutboundRequest req) {
  head_ = std::move(req.head);
  isHead_ = req.isHead;
  idempotent_ = req.idempotent;
  hasBody_ = req.hasBody;
  chunkedBody_ = req.chunked;
  upgrade_ = req.upgrade;
  attempt();
}

void ProxyCall::start(const parser::Request& req, const Exchange& ex, bool strip, std::string_view prefix) {
  const ProxySpec& spec = pool_->spec();
  isHead_ = req.isHead;
  idempotent_ = isIdempotent(req.method);
  // A body of no announced length (HTTP/2) goes upstream in chunks.
  hasBody_ = req.contentLength > 0 || req.chunked || req.unsizedBody();
  chunkedBody_ = req.chunked || req.unsizedBody();

  // Request line: the target with the route's prefix taken off when asked.
  std::string& h = head_;
  h.reserve(256 + req.target.size());
  h.append(req.method).push_back(' ');
  std::string_view target = req.target;
  if (strip) {
    if (target.substr(0, prefix.size()) == prefix) target.remove_prefix(prefix.size());
    if (target.empty() || target.front() != '/') h.push_back('/');
  }
  h.append(target).append(" HTTP/1.1\r\n");

  std::string_view connection = req.header("connection");
  // Fields kuai extends, their values as the client sent them: a list split
  // over several lines is one list.
  std::string forwardedFor;
  std::string via;
  auto addToList = [](std::string& list, std::string_view value, std::string_view sep) {
    if (!list.empty()) list.append(sep);
    list.append(value);
  };
  // HTTP/2 clients may send each cookie as a field of its own; for HTTP/1.1
  // they are joined into one, "; " between (RFC 9113 §8.2.3).
  std::string cookie;
  for (const parser::Header& f : req.headers) {
    std::string_view n = f.name;
    if (isHopByHop(n)) continue;
    if (!connection.empty() && listedIn(connection, n)) continue;
    switch (n.size()) {
      case 3:
        if (equalsIgnoreCase(n, "via")) {
          addToList(via, f.value, ", ");
          continue;
        }
        break;
      case 4:
        if (equalsIgnoreCase(n, "host")) continue;
        break;
      case 6:
        // kuai answered 100-continue itself; the body follows at once.
        if (equalsIgnoreCase(n, "expect")) continue;
        if (req.versionMajor == 2 && n == "cookie") {
          addToList(cookie, f.value, "; ");
          continue;
        }
        break;
      case 14:
        if (equalsIgnoreCase(n, "content-length")) continue;
        break;
      case 15:
        if (equalsIgnoreCase(n, "x-forwarded-for")) {
          addToList(forwardedFor, f.value, ", ");
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
  if (!cookie.empty()) appendLine(h, "cookie", cookie);
  std::string_view host = spec.hostRewrite.empty() ? req.host : std::string_view(spec.hostRewrite);
  if (host.empty()) host = spec.upstreams.front().name;  // HTTP/1.0 without Host
  appendLine(h, "Host", host);
  addToList(forwardedFor, ex.remoteAddress(), ", ");
  appendLine(h, "X-Forwarded-For", forwardedFor);
  appendLine(h, "X-Forwarded-Proto", ex.encrypted() ? "https" : "http");
  if (!req.host.empty()) appendLine(h, "X-Forwarded-Host", req.host);
  addToList(via, req.versionMajor == 2 ? "2 kuai" : req.versionMinor == 0 ? "1.0 kuai" : "1.1 kuai", ", ");
  appendLine(h, "Via", via);
  if (req.contentLength >= 0 && !req.chunked) {
    char num[24];
    auto [end, ec] = std::to_chars(num, num + sizeof(num), uint64_t(req.contentLength));
    appendLine(h, "Content-Length", std::string_view(num, size_t(end - num)));
  } else if (chunkedBody_) {
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
  UpstreamPool::Upstream* up = pool_->pick(tried_);
  if (!up) {
    giveUp(noneLeft, lastError_.empty() ? "no upstream available" : lastError_);
    return;
  }
  tried_ |= uint64_t(1) << (pool_->indexOf(up) & 63);
  ++attempts_;
  int err = 0;
  UpstreamConn* c = pool_->acquire(up, err);
  if (!c) {
    pool_->failed(up);
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
  const ProxySpec& spec = pool_->spec();
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
  deadline_ = now() + pool_->spec().readTimeoutMs;
}

void ProxyCall::connectFailed(int err) {
  // Nothing reached the upstream: any request may go to another one, its
  // queued bytes (head and body so far) moving along.
  UpstreamConn* c = conn_;
  lastError_ = std::string("connect: ") + errnoName(-err);
  OutputQueue queued = std::move(c->sock->output());
  pool_->failed(c->up);
  dropConn(true);
  int status = err == -ETIMEDOUT ? 504 : 502;
  if (attempts_ <= pool_->spec().retries) {
    attempt(&queued, status);
    return;
  }
  giveUp(status, lastError_);
}

void ProxyCall::upstreamBytes() {
  gotByte_ = true;
  if (phase_ != Phase::kDone && !upstreamPaused_) deadline_ = now() + pool_->spec().readTimeoutMs;
}

void ProxyCall::upstreamHead(const parser::Response& resp) {
  if (resp.status < 200 && resp.status != 101) return;  // interim: kuai sent its own 100
  if (!ex_->valid()) return;
  if (resp.status == 101 && !upgrade_) return;  // not asked for: afterFeed fails it
  phase_ = resp.status == 101 ? Phase::kTunnel : Phase::kStreaming;
  if (phase_ == Phase::kTunnel) {
    ex_->upgrade(resp);
    deadline_ = now() + pool_->spec().readTimeoutMs;
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
  if (!resp.trailers.empty() && ex_->valid()) ex_->trailers(resp.trailers);
}

void ProxyCall::tunnelData(const char* data, size_t len) {
  if (!ex_->valid()) return;
  deadline_ = now() + pool_->spec().readTimeoutMs;
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
    pool_->failed(conn_->up);
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
                    conn_->requests + 1 < pool_->spec().maxRequestsPerConnection;
    pool_->succeeded(conn_->up);
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
      pool_->succeeded(c->up);
      finish(false);
      return;
    }
    pool_->failed(c->up);
    giveUp(502, std::string("malformed response: ") + c->parser.error().reason);
    return;
  }
  if (!gotByte_) {
    // Reset or closed before any response byte.
    bool reused = c->requests > 0;
    lastError_ = err ? std::string("reset: ") + errnoName(-err) : "reset: closed before a response";
    dropConn(!reused);
    if (!reused) pool_->failed(c->up);
    const ProxySpec& spec = pool_->spec();
    bool retry = idempotent_ && replayable_ && (attempts_ <= spec.retries || reused);
    if (retry) {
      if (reused) tried_ &= ~(uint64_t(1) << (pool_->indexOf(c->up) & 63));
      attempt();  // gives up itself when no upstream is left
      return;
    }
    giveUp(502, lastError_);
    return;
  }
  pool_->failed(c->up);
  giveUp(502, err ? std::string("reset: ") + errnoName(-err) : "reset: truncated head");
}

void ProxyCall::upstreamDrained() {
  if (bodyPaused_) {
    bodyPaused_ = false;
    if (ex_->valid()) ex_->resumeBody();
  }
  if (phase_ == Phase::kWaiting) deadline_ = now() + pool_->spec().readTimeoutMs;
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
  if (phase_ == Phase::kWaiting) deadline_ = now() + pool_->spec().sendTimeoutMs;
  if (phase_ == Phase::kTunnel) deadline_ = now() + pool_->spec().readTimeoutMs;
}

void ProxyCall::endTunnel() {
  // Either side closed: what is queued to the client goes out, then both close.
  if (conn_) dropConn(false);
  phase_ = Phase::kDone;
  if (ex_->valid()) ex_->abort();
  pool_->callDone(this);
}

void ProxyCall::onBodyEnd() {
  if (phase_ == Phase::kTunnel) {
    endTunnel();
    return;
  }
  bodyDone_ = true;
  if (!conn_ || phase_ == Phase::kDone) return;
  if (chunkedBody_) {
    std::string last = "0\r\n" + ex_->requestTrailers() + "\r\n";
    conn_->sock->output().buffer().append(last);
    if (replayable_) head_.append(last);
    conn_->sock->flush();
  }
}

void ProxyCall::onAbort() {
  // The client went away: the upstream connection is mid-exchange, close it.
  if (phase_ == Phase::kDone) return;
  if (conn_) dropConn(false);
  phase_ = Phase::kDone;
  pool_->callDone(this);
}

void ProxyCall::onDrain() {
  if (upstreamPaused_ && conn_) {
    upstreamPaused_ = false;
    conn_->sock->setReadPaused(false);
    deadline_ = now() + pool_->spec().readTimeoutMs;
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
      pool_->failed(conn_->up);
      giveUp(504, "timeout: no response within readTimeout");
      return;
    case Phase::kStreaming:
      pool_->failed(conn_->up);
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
  pool_->callDone(this);
}

void ProxyCall::finish(bool reusable) {
  UpstreamConn* c = conn_;
  conn_ = nullptr;
  phase_ = Phase::kDone;
  if (c) {
    if (upstreamPaused_) c->sock->setReadPaused(false);
    pool_->release(c, reusable);
  }
  pool_->callDone(this);
}

void ProxyCall::dropConn(bool) {
  UpstreamConn* c = conn_;
  conn_ = nullptr;
  if (c) pool_->release(c, false);
}

}  // namespace kuai::server
