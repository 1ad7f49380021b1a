#include "server/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <charconv>

#include "server/http_status.h"
#include "server/reactor.h"
#include "server/router.h"

namespace kuai::server {

namespace {

void appendNumber(std::string& out, uint64_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), n);
  out.append(buf, end);
}

}  // namespace

Connection::Connection(Reactor& reactor, int fd, std::unique_ptr<tls::TlsSession> tls,
                       AsyncHandler* handler)
    : reactor_(reactor),
      fd_(fd),
      parser_(*this, reactor.config().limits),
      tls_(std::move(tls)),
      handler_(handler) {
  phaseStartMs_ = lastProgressMs_ = reactor.nowMs();
  idleMs_ = reactor.config().timeouts.idleMs;
  static thread_local uint64_t nextId = 0;
  id_ = ++nextId;
}

Connection::~Connection() {
  dropExchange();
  if (toldHandler_ && handler_) handler_->onConnectionClose(id_);
  if (fd_ >= 0) ::close(fd_);
}

void Connection::dropExchange() {
  if (!exchange_) return;
  std::shared_ptr<Exchange> ex = std::move(exchange_);
  bool aborted = !ex->ended();
  ex->detach();
  if (aborted && ex->listener()) ex->listener()->onAbort();
}

size_t Connection::pendingBytes() const { return out_.bytes() + tlsOut_.bytes(); }

time_t Connection::reactorNowSeconds() const { return reactor_.nowSeconds(); }

bool Connection::idle() const {
  return state_ == State::kOpen && out_.empty() && tlsOut_.empty() &&
         parser_.phase() == parser::RequestParser::Phase::kIdle;
}

void Connection::onData(const char* data, size_t len) {
  if (tls_) {
    onTlsData(data, len);
    return;
  }
  if (state_ != State::kOpen) return;  // closing or lingering: leftovers are dropped
  feedParser(data, len);
}

// After a 101: the request's leftovers and everything after go to the handler.
void Connection::startTunnel() {
  tunnel_ = true;
  lastProgressMs_ = reactor_.nowMs();
  // Inside the parser (a handler that switched while the request was being
  // parsed), feedParser hands over the rest once the parser has stopped.
  if (!inParser_) deliverTunnelLeftovers();
}

void Connection::deliverTunnelLeftovers() {
  std::string rest = parser_.takeBuffered();
  if (!rest.empty() && exchange_ && exchange_->listener()) exchange_->listener()->onBody(rest);
}

void Connection::onTlsData(const char* data, size_t len) {
  if (state_ == State::kClosed) return;
  std::string& plain = reactor_.plainScratch();
  plain.clear();
  tls::TlsSession::Status st = tls_->onCiphertext(data, len, plain);
  switch (st) {
    case tls::TlsSession::Status::kPlainHttp:
      // A plain-text request on the TLS port: answer it in clear text, then close.
      tls_.reset();
      if (state_ == State::kOpen) failRequest(400);
      return;
    case tls::TlsSession::Status::kError:
      // Send the alert BoringSSL produced (if any), then close.
      if (tls_->hasOutput() && state_ == State::kOpen) {
        tls_->takeOutput(tlsOut_.buffer());
        reactor_.markDirty(this);
        closeAfterResponse();
      } else {
        reactor_.closeConnection(this);
      }
      return;
    case tls::TlsSession::Status::kOk:
    case tls::TlsSession::Status::kClosed:
      break;
  }
  if (tls_->hasOutput()) {
    tls_->takeOutput(tlsOut_.buffer());
    reactor_.markDirty(this);
  }
  if (!plain.empty() && state_ == State::kOpen) feedParser(plain.data(), plain.size());
  if (st == tls::TlsSession::Status::kClosed && state_ != State::kClosed) onEof();
}

void Connection::fillWire() {
  if (!tls_ || !tls_->handshakeDone() || state_ == State::kClosed) return;
  // Encrypt at most this much per call so a large file is not turned into
  // ciphertext all at once.
  size_t budget = 256 * 1024;
  while (!out_.empty() && budget > 0) {
    OutputQueue::Segment& seg = out_.head();
    if (seg.isFile()) {
      size_t chunk = std::min<uint64_t>({seg.remaining, 64 * 1024, budget});
      std::string& buf = reactor_.fileScratch();
      buf.resize(chunk);
      ssize_t n = ::pread(seg.file->fd, buf.data(), chunk, off_t(seg.offset));
      if (n <= 0) {  // the file shrank: the promised length cannot be kept
        reactor_.closeConnection(this);
        return;
      }
      tls_->writePlaintext(buf.data(), size_t(n));
      out_.consume(size_t(n));
      budget -= size_t(n);
    } else {
      std::string_view m = out_.headMemory();
      size_t n = std::min(m.size(), budget);
      tls_->writePlaintext(m.data(), n);
      out_.consume(n);
      budget -= n;
    }
  }
  if (tls_->hasOutput()) tls_->takeOutput(tlsOut_.buffer());
}

void Connection::feedParser(const char* data, size_t len) {
  if (tunnel_) {
    lastProgressMs_ = reactor_.nowMs();
    if (exchange_ && exchange_->listener()) exchange_->listener()->onBody({data, len});
    return;
  }
  auto before = parser_.phase();
  if (before == parser::RequestParser::Phase::kIdle) {
    phaseStartMs_ = requestStartMs_ = reactor_.nowMs();
  }
  inParser_ = true;
  auto r = parser_.feed(data, len);
  inParser_ = false;
  if (tunnel_) {
    deliverTunnelLeftovers();
    return;
  }
  if (r == parser::RequestParser::Result::kError) {
    failRequest(parser_.error().status);
    return;
  }
  auto after = parser_.phase();
  if (after == parser::RequestParser::Phase::kBody) {
    // Body timeout counts from the last body byte.
    phaseStartMs_ = reactor_.nowMs();
  } else if (after == parser::RequestParser::Phase::kIdle && state_ == State::kOpen) {
    phaseStartMs_ = reactor_.nowMs();
  }
}

void Connection::onEof() {
  peerClosed_ = true;
  if (tunnel_ && exchange_ && exchange_->listener() && state_ == State::kOpen) {
    exchange_->listener()->onBodyEnd();  // the tunnel's handler closes both sides
    return;
  }
  switch (state_) {
    case State::kOpen:
      if (!out_.empty() || !tlsOut_.empty()) {
        // The client half-closed after sending its requests: finish the answers.
        closeAfterResponse();
        return;
      }
      break;
    case State::kClosing:
      return;  // the last response is still going out; onDrained closes
    case State::kLingering:
      break;
    case State::kClosed:
      return;
  }
  reactor_.closeConnection(this);
}

void Connection::onDrained() {
  lastProgressMs_ = reactor_.nowMs();
  if (exchange_ && exchange_->waitingDrain) {
    exchange_->waitingDrain = false;
    if (exchange_->listener()) exchange_->listener()->onDrain();
  }
  if (state_ == State::kClosing) {
    if (tls_ && !closeNotifySent_ && tls_->handshakeDone()) {
      closeNotifySent_ = true;
      tls_->shutdown();
      if (tls_->hasOutput()) {
        tls_->takeOutput(tlsOut_.buffer());
        reactor_.markDirty(this);
        return;  // linger once the alert is out
      }
    }
    if (peerClosed_) {
      // Nothing more can arrive: no need to linger.
      reactor_.closeConnection(this);
      return;
    }
    state_ = State::kLingering;
    phaseStartMs_ = reactor_.nowMs();
    reactor_.shutdownWrite(this);
  } else if (state_ == State::kOpen &&
             parser_.phase() == parser::RequestParser::Phase::kIdle) {
    phaseStartMs_ = reactor_.nowMs();
    if (reactor_.draining()) closeAfterResponse();
  }
}

void Connection::onShutdown() {
  if (idle()) {
    reactor_.closeConnection(this);
  }
  // Busy connections answer their current request with Connection: close.
}

void Connection::onTick(uint64_t now) {
  const Timeouts& t = reactor_.config().timeouts;
  switch (state_) {
    case State::kClosed:
      return;
    case State::kLingering: {
      // While shutting down, wait less for the client to close its side.
      uint64_t limit = reactor_.draining() ? std::min<uint64_t>(t.lingerMs, 500) : t.lingerMs;
      if (now - phaseStartMs_ >= limit) reactor_.closeConnection(this);
      return;
    }
    case State::kClosing:
      if (now - lastProgressMs_ >= t.sendMs) reactor_.closeConnection(this);
      return;
    case State::kOpen:
      break;
  }
  if (exchange_ && parser_.paused() && out_.empty() && tlsOut_.empty()) {
    return;  // the handler is still working on its answer: its time, not the client's
  }
  if (tls_ && !tls_->handshakeDone()) {
    // The handshake shares the request-head deadline.
    if (now - phaseStartMs_ >= t.headerMs) reactor_.closeConnection(this);
    return;
  }
  if (!out_.empty() || !tlsOut_.empty()) {
    // Waiting for the client to take our bytes.
    if (now - lastProgressMs_ >= t.sendMs) reactor_.closeConnection(this);
    return;
  }
  switch (parser_.phase()) {
    case parser::RequestParser::Phase::kIdle:
      if (now - phaseStartMs_ >= idleMs_) reactor_.closeConnection(this);
      break;
    case parser::RequestParser::Phase::kHead:
      if (nodeTimeouts_) {
        if ((headersMs_ && now - requestStartMs_ >= headersMs_) ||
            (requestMs_ && now - requestStartMs_ >= requestMs_) ||
            (t.headerExplicit && now - phaseStartMs_ >= t.headerMs)) {
          failRequest(408);
        }
      } else if (now - phaseStartMs_ >= t.headerMs) {
        failRequest(408);
      }
      break;
    case parser::RequestParser::Phase::kBody:
      // A handler that stopped reading owns the wait, not the client.
      if (readPaused_) break;
      if (nodeTimeouts_) {
        if ((requestMs_ && now - requestStartMs_ >= requestMs_) ||
            (t.bodyExplicit && now - phaseStartMs_ >= t.bodyMs)) {
          failRequest(408);
        }
      } else if (now - phaseStartMs_ >= t.bodyMs) {
        failRequest(408);
      }
      break;
  }
}

const std::string& Connection::peerAddress() {
  if (peerPort_ < 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "";
    peerPort_ = 0;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        peerPort_ = ntohs(a->sin_port);
      } else if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        peerPort_ = ntohs(a->sin6_port);
      }
    }
    peerAddress_ = host;
  }
  return peerAddress_;
}

namespace {
uint64_t monotonicMicros() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000 + uint64_t(ts.tv_nsec) / 1000;
}
}  // namespace

void Connection::beginAccounting(const parser::Request& req) {
  startUs_ = monotonicMicros();
  status_ = 0;
  respBytes_ = 0;
  if (!reactor_.logging()) return;
  logLine_.clear();
  logLine_.append(req.method).push_back(' ');
  logLine_.append(req.target).append(req.versionMinor == 0 ? " HTTP/1.0" : " HTTP/1.1");
  logRefAt_ = uint32_t(logLine_.size());
  logLine_.append(req.header("referer"));
  logUaAt_ = uint32_t(logLine_.size());
  logLine_.append(req.header("user-agent"));
}

void Connection::endAccounting() {
  if (!startUs_) return;
  uint64_t us = monotonicMicros() - startUs_;
  startUs_ = 0;
  reactor_.stats().record(status_, us);
  if (!reactor_.logging()) return;
  std::string_view line(logLine_);
  formatCombined(reactor_.logBuffer(), peerAddress(), reactor_.nowSeconds(),
                 line.substr(0, logRefAt_), status_, respBytes_,
                 line.substr(logRefAt_, logUaAt_ - logRefAt_), line.substr(logUaAt_));
}

void Connection::onHeaders(const parser::Request& req) {
  ++requests_;
  if (reactor_.observing()) beginAccounting(req);
  http10_ = req.versionMinor == 0;
  headOnly_ = req.isHead;
  keepAlive_ = req.keepAlive && !reactor_.draining() &&
               requests_ < reactor_.config().maxRequestsPerConnection;
  active_ = handler_ ? handler_ : reactor_.router().asyncHandler(req);
  if (req.expectContinue && (req.contentLength > 0 || req.chunked) &&
      !(active_ && active_->answersContinue())) {
    out_.buffer().append("HTTP/1.1 100 Continue\r\n\r\n");
    wantFlush();
  }
  if (active_) {
    exchange_ = std::make_shared<Exchange>(this);
    const std::string& addr = peerAddress();  // fills peerPort_ too
    exchange_->setPeer(addr, peerPort_, tls_ != nullptr);
    exchange_->setConnectionId(id_);
    if (active_ == handler_) toldHandler_ = true;
    exchange_->setHead(headOnly_, http10_);
    active_->onRequest(req, exchange_);
  }
}

void Connection::onBody(const parser::Request&, std::string_view chunk) {
  // Native handlers take no body; it is counted (limits) and dropped.
  if (exchange_ && exchange_->listener()) exchange_->listener()->onBody(chunk);
}

bool Connection::onRequest(const parser::Request& req) {
  if (active_) {
    // (An upgraded exchange's body is the new protocol's: its end is the EOF.)
    if (exchange_ && exchange_->listener() && !exchange_->tunnel()) {
      exchange_->listener()->onBodyEnd();
    }
    if (exchange_ && !exchange_->ended()) return false;  // resumed by exchangeEnded()
    if (exchange_) {
      exchange_->detach();
      exchange_.reset();
    }
  } else {
    reactor_.router().handle(req, *this);
  }
  if (startUs_) endAccounting();
  wantFlush();
  if (!keepAlive_) {
    closeAfterResponse();
    return false;  // stop parsing: whatever follows is not answered
  }
  return true;
}

void Connection::exchangeWrote() { wantFlush(); }

void Connection::abortExchange() {
  // What was queued goes out first; then the connection closes, short of what
  // the response announced.
  keepAlive_ = false;
  if (startUs_) endAccounting();
  if (exchange_) {
    exchange_->detach();
    exchange_.reset();
  }
  if (state_ == State::kOpen) {
    wantFlush();
    state_ = State::kClosing;
    peerClosed_ = true;  // no lingering: the response is broken anyway
    lastProgressMs_ = reactor_.nowMs();
    if (out_.empty() && tlsOut_.empty()) onDrained();
  }
}

void Connection::setReadPaused(bool paused) {
  if (paused == readPaused_ || state_ == State::kClosed) return;
  readPaused_ = paused;
  reactor_.setReading(this, !paused);
  if (!paused) phaseStartMs_ = reactor_.nowMs();  // the body timeout starts again
}

void Connection::exchangeEnded(Exchange* ex) {
  if (startUs_) endAccounting();
  wantFlush();
  // The answer is complete: whatever is left of the request body is read (and
  // dropped), as Node does, so the connection can go on.
  setReadPaused(false);
  // Inside the parser (the handler answered synchronously, or the body is still
  // arriving), onRequest sees the ended exchange and carries on by itself.
  if (inParser_ || !parser_.paused() || exchange_.get() != ex) return;
  exchange_->detach();
  exchange_.reset();
  if (!keepAlive_) {
    closeAfterResponse();
    return;
  }
  if (state_ != State::kOpen) return;
  inParser_ = true;
  auto r = parser_.resume();
  inParser_ = false;
  if (r == parser::RequestParser::Result::kError) failRequest(parser_.error().status);
}

void Connection::writeHeadWithReason(int status, std::string_view reason,
                                     std::string_view headerLines, int keepAliveSeconds) {
  status_ = status;
  if (reactor_.draining()) keepAlive_ = false;  // shutting down: this is the last answer
  std::string& b = out_.buffer();
  if (reason.empty() || reason == statusReason(status)) {
    b.append(statusLine(status));
  } else {
    b.append("HTTP/1.1 ");
    appendNumber(b, uint64_t(status));
    b.push_back(' ');
    b.append(reason);
    b.append("\r\n");
  }
  b.append(reactor_.dateLine());
  b.append(headerLines);
  if (!keepAlive_) {
    b.append("Connection: close\r\n\r\n");
  } else if (keepAliveSeconds == Exchange::kNoKeepAliveHeader) {
    b.append(http10_ ? "Connection: keep-alive\r\n\r\n" : "\r\n");
  } else {
    // As Node does: say the connection stays open, and for how long.
    if (keepAliveSeconds > 0) idleMs_ = uint32_t(keepAliveSeconds) * 1000;
    b.append("Connection: keep-alive\r\nKeep-Alive: timeout=");
    appendNumber(b, idleMs_ / 1000);
    b.append("\r\n\r\n");
  }
}

void Exchange::writeHead(int status, std::string_view reason, std::string_view headerLines,
                         int64_t contentLength, int keepAliveSeconds) {
  if (!conn_ || headersSent_) return;
  headersSent_ = true;
  noBody_ = head_ || status == 204 || status == 304 || (status >= 100 && status < 200);
  std::string lines(headerLines);
  if (contentLength >= 0) {
    if (status != 204 && status != 304) {
      lines.append("Content-Length: ").append(std::to_string(contentLength)).append("\r\n");
    }
  } else if (contentLength == -1 && !noBody_) {
    if (http10_) {
      conn_->setKeepAlive(false);  // the body ends when the connection does
    } else {
      chunked_ = true;
      lines.append("Transfer-Encoding: chunked\r\n");
    }
  }
  conn_->writeHeadWithReason(status, reason, lines, keepAliveSeconds);
  conn_->exchangeWrote();
}

void Exchange::acceptUpgrade(std::string_view headerLines) {
  if (!conn_ || headersSent_) return;
  headersSent_ = true;
  tunnel_ = true;
  std::string& b = conn_->output().buffer();
  b.append("HTTP/1.1 101 Switching Protocols\r\n");
  b.append(headerLines);
  b.append("\r\n");
  conn_->exchangeWrote();
  conn_->startTunnel();
}

void Exchange::writeError(int status) {
  std::string body(std::to_string(status));
  body.append(" ").append(statusReason(status)).append("\n");
  writeHead(status, {}, "Content-Type: text/plain; charset=utf-8\r\n", int64_t(body.size()),
            kNoKeepAliveHeader);
  write(body);
  end();
}

void Exchange::startRaw() {
  if (!conn_ || headersSent_) return;
  headersSent_ = true;
  tunnel_ = true;
  conn_->startTunnel();
}

void Exchange::writeContinue() {
  if (!conn_ || headersSent_ || continued_) return;
  continued_ = true;
  conn_->output().buffer().append("HTTP/1.1 100 Continue\r\n\r\n");
  conn_->exchangeWrote();
}

bool Exchange::write(std::string_view bytes) {
  if (!conn_ || ended_) return true;
  if (tunnel_) {
    conn_->output().buffer().append(bytes);
    conn_->exchangeWrote();
    if (conn_->pendingBytes() >= 64 * 1024) {
      waitingDrain = true;
      return false;
    }
    return true;
  }
  if (!headersSent_) writeHead(200, {}, {}, -1);
  if (noBody_ || bytes.empty()) return true;
  std::string& b = conn_->output().buffer();
  if (chunked_) {
    char hex[20];
    int n = std::snprintf(hex, sizeof(hex), "%zx\r\n", bytes.size());
    b.append(hex, size_t(n));
    b.append(bytes);
    b.append("\r\n", 2);
  } else {
    b.append(bytes);
  }
  conn_->countBody(bytes.size());
  conn_->exchangeWrote();
  // Above this much unsent output, ask the writer to wait for 'drain'.
  constexpr size_t kHighWater = 64 * 1024;
  if (conn_->pendingBytes() >= kHighWater) {
    waitingDrain = true;
    return false;
  }
  return true;
}

void Exchange::abort() {
  if (!conn_) return;
  ended_ = true;
  Connection* c = conn_;
  c->abortExchange();
}

size_t Exchange::pendingBytes() const { return conn_ ? conn_->pendingBytes() : 0; }

void Exchange::pauseBody() {
  if (conn_ && !ended_) conn_->setReadPaused(true);
}

void Exchange::resumeBody() {
  if (conn_) conn_->setReadPaused(false);
}

void Exchange::end() {
  if (ended_) return;
  if (conn_ && !headersSent_) writeHead(200, {}, {}, 0);
  if (conn_ && chunked_ && !noBody_) {
    conn_->output().buffer().append("0\r\n\r\n", 5);
    conn_->exchangeWrote();
  }
  ended_ = true;
  if (conn_) conn_->exchangeEnded(this);
}

void Connection::writeHead(int status, std::string_view headerLines, uint64_t contentLength,
                           bool withLength) {
  status_ = status;
  if (reactor_.draining()) keepAlive_ = false;  // shutting down: this is the last answer
  if (!headOnly_ && withLength) respBytes_ = contentLength;
  std::string& b = out_.buffer();
  std::string_view line = statusLine(status);
  std::string_view date = reactor_.dateLine();
  b.reserve(b.size() + line.size() + date.size() + headerLines.size() + 96);
  b.append(line);
  b.append("Server: kuai\r\n", 14);
  b.append(date);
  b.append(headerLines);
  if (withLength) {
    b.append("Content-Length: ", 16);
    appendNumber(b, contentLength);
    b.append("\r\n", 2);
  }
  if (!keepAlive_) {
    b.append("Connection: close\r\n\r\n", 21);
  } else if (http10_) {
    b.append("Connection: keep-alive\r\n\r\n", 26);
  } else {
    b.append("\r\n", 2);
  }
}

void Connection::writeFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) {
  out_.appendFile(std::move(file), offset, length);
}

void Connection::writeError(int status, std::string_view extraHeaders) {
  std::string_view reason = statusReason(status);
  std::string headers = "Content-Type: text/plain; charset=utf-8\r\n";
  headers.append(extraHeaders);
  uint64_t len = 3 + 1 + reason.size() + 1;
  writeHead(status, headers, len);
  if (!headOnly_) {
    std::string& b = out_.buffer();
    appendNumber(b, uint64_t(status));
    b.push_back(' ');
    b.append(reason);
    b.push_back('\n');
  }
}

// A request could not be parsed or timed out: answer, then close.
void Connection::failRequest(int status) {
  keepAlive_ = false;
  headOnly_ = false;
  http10_ = false;
  if (reactor_.observing() && !startUs_) {
    // Refused before its head was whole: counted, logged without a request line.
    startUs_ = monotonicMicros();
    logLine_.clear();
    logRefAt_ = logUaAt_ = 0;
  }
  writeError(status);
  if (startUs_) endAccounting();
  wantFlush();
  closeAfterResponse();
}

void Connection::closeAfterResponse() {
  if (state_ != State::kOpen) return;
  state_ = State::kClosing;
  lastProgressMs_ = reactor_.nowMs();
  if (out_.empty() && tlsOut_.empty()) onDrained();
}

void Connection::wantFlush() {
  if (!out_.empty() || !tlsOut_.empty()) reactor_.markDirty(this);
}

}  // namespace kuai::server
