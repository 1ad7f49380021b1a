#include "server/connection.h"

#include <unistd.h>

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

Connection::Connection(Reactor& reactor, int fd)
    : reactor_(reactor), fd_(fd), parser_(*this, reactor.config().limits) {
  phaseStartMs_ = lastProgressMs_ = reactor.nowMs();
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

time_t Connection::reactorNowSeconds() const { return reactor_.nowSeconds(); }

bool Connection::idle() const {
  return state_ == State::kOpen && out_.empty() &&
         parser_.phase() == parser::RequestParser::Phase::kIdle;
}

void Connection::onData(const char* data, size_t len) {
  if (state_ != State::kOpen) return;  // closing or lingering: leftovers are dropped
  auto before = parser_.phase();
  if (before == parser::RequestParser::Phase::kIdle) phaseStartMs_ = reactor_.nowMs();
  auto r = parser_.feed(data, len);
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
  if (state_ == State::kOpen && !out_.empty()) {
    // The client half-closed after sending its requests: finish the answers.
    closeAfterResponse();
    return;
  }
  reactor_.closeConnection(this);
}

void Connection::onDrained() {
  lastProgressMs_ = reactor_.nowMs();
  if (state_ == State::kClosing) {
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
    case State::kLingering:
      if (now - phaseStartMs_ >= t.lingerMs) reactor_.closeConnection(this);
      return;
    case State::kClosing:
      if (now - lastProgressMs_ >= t.sendMs) reactor_.closeConnection(this);
      return;
    case State::kOpen:
      break;
  }
  if (!out_.empty()) {
    // Waiting for the client to take our bytes.
    if (now - lastProgressMs_ >= t.sendMs) reactor_.closeConnection(this);
    return;
  }
  switch (parser_.phase()) {
    case parser::RequestParser::Phase::kIdle:
      if (now - phaseStartMs_ >= t.idleMs) reactor_.closeConnection(this);
      break;
    case parser::RequestParser::Phase::kHead:
      if (now - phaseStartMs_ >= t.headerMs) failRequest(408);
      break;
    case parser::RequestParser::Phase::kBody:
      if (now - phaseStartMs_ >= t.bodyMs) failRequest(408);
      break;
  }
}

void Connection::onHeaders(const parser::Request& req) {
  if (req.expectContinue && (req.contentLength > 0 || req.chunked)) {
    out_.buffer().append("HTTP/1.1 100 Continue\r\n\r\n");
    wantFlush();
  }
}

void Connection::onBody(const parser::Request&, std::string_view) {
  // Native handlers take no body; it is counted (limits) and dropped.
}

bool Connection::onRequest(const parser::Request& req) {
  ++requests_;
  http10_ = req.versionMinor == 0;
  headOnly_ = req.isHead;
  keepAlive_ = req.keepAlive && !reactor_.draining() &&
               requests_ < reactor_.config().maxRequestsPerConnection;
  reactor_.router().handle(req, *this);
  wantFlush();
  if (!keepAlive_) {
    closeAfterResponse();
    return false;  // stop parsing: whatever follows is not answered
  }
  return true;
}

void Connection::writeHead(int status, std::string_view headerLines, uint64_t contentLength,
                           bool withLength) {
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
  writeError(status);
  wantFlush();
  closeAfterResponse();
}

void Connection::closeAfterResponse() {
  if (state_ != State::kOpen) return;
  state_ = State::kClosing;
  lastProgressMs_ = reactor_.nowMs();
  if (out_.empty()) onDrained();
}

void Connection::wantFlush() {
  if (!out_.empty()) reactor_.markDirty(this);
}

}  // namespace kuai::server
