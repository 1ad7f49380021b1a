#include "server/http1_session.h"

#include "server/http2_session.h"

#include <time.h>

#include <charconv>
#include <cstdio>

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

Http1Session::Http1Session(Transport& transport, const Listener& listener)
    : transport_(transport),
      reactor_(transport.reactor()),
      listener_(listener),
      listenerHandler_(listener.handler),
      headDeadlineMs_(listener.headDeadlineMs),
      requestDeadlineMs_(listener.requestDeadlineMs),
      listenerDeadlines_(listener.deadlines),
      parser_(*this, reactor_.config().limits) {
  phaseStartMs_ = reactor_.nowMs();
  idleMs_ = reactor_.config().timeouts.idleMs;
  if (!listener.requireHost) parser_.setRequireHost(false);
}

Http1Session::~Http1Session() {
  dropExchange();
  if (toldHandler_ && listenerHandler_) {
    listenerHandler_->onConnectionClose(transport_.id(), transport_.bytesRead(), transport_.bytesWritten());
  }
}

void Http1Session::dropExchange() {
  if (!exchange_) return;
  std::shared_ptr<Exchange> ex = std::move(exchange_);
  bool aborted = !ex->ended();
  ex->detach();
  if (aborted && ex->listener()) ex->listener()->onAbort();
}

std::shared_ptr<Exchange> Http1Session::newExchange() {
  // One exchange per connection is used again while nobody else holds it (a
  // script or the proxy may keep theirs past the response).
  if (spare_ && spare_.use_count() == 1) {
    std::shared_ptr<Exchange> ex = std::move(spare_);
    ex->reset(this);
    return ex;
  }
  spare_.reset();
  return std::make_shared<Exchange>(this);
}

bool Http1Session::idle() const { return parser_.phase() == parser::RequestParser::Phase::kIdle; }

// Asked to close gracefully while output is still queued: once the last
// response is whole, the connection is between requests and closes after
// sending it (a script's socket.end() right after a response's 'finish').
void Http1Session::onShutdown() {
  if (idle() && !fresh() && (!exchange_ || exchange_->ended())) transport_.closeAfterOutput();
}

// ---------------------------------------------------------------- bytes in

void Http1Session::onData(const char* data, size_t len) {
  if (!started_ && handOver(data, len)) return;
  feed(data, len);
}

bool Http1Session::handOver(const char* data, size_t len) {
  std::string_view in(data, len);
  bool h2 = transport_.alpn() == "h2" || !listener_.http1;
  if (!h2 && listener_.h2c && !transport_.isTls()) {
    // The preface's first line decides (RFC 9113 §3.4): what follows it is
    // nghttp2's to check (a bad one is a connection error there).
    std::string_view preface = Http2Session::kPreface.substr(0, 16);
    std::string seen = preface_ + std::string(in.substr(0, preface.size()));
    size_t n = std::min(seen.size(), preface.size());
    if (seen.compare(0, n, preface, 0, n) == 0) {
      if (n < preface.size()) {
        preface_ = seen;  // too short to tell yet
        return true;
      }
      h2 = true;
    }
  }
  started_ = true;
  std::string held;
  held.swap(preface_);
  if (h2) {
    Transport& t = transport_;
    t.replaceProtocol(std::make_unique<Http2Session>(t, listener_));
    // `this` is retired: only locals from here on.
    if (!held.empty()) t.protocol()->onData(held.data(), held.size());
    if (t.state() == Transport::State::kOpen) t.protocol()->onData(data, len);
    return true;
  }
  if (!held.empty()) {
    held.append(in);
    feed(held.data(), held.size());
    return true;
  }
  return false;
}

void Http1Session::feed(const char* data, size_t len) {
  // A protocol switch takes effect once the request is whole: a body its head
  // announced is still HTTP (as node parses it into the request), and only the
  // bytes after it are the new protocol's, however the input was cut.
  if (tunnel_ && parser_.paused()) {
    if (exchange_ && exchange_->listener()) exchange_->listener()->onBody({data, len});
    return;
  }
  if (handedOff_) return;  // its handler answers the request that failed
  if (parser_.phase() == parser::RequestParser::Phase::kIdle) phaseStartMs_ = requestStartMs_ = reactor_.nowMs();
  inParser_ = true;
  feeding_ = std::string_view(data, len);  // (for failRequest: the bytes it failed in)
  auto r = parser_.feed(data, len);
  inParser_ = false;
  if (r == parser::RequestParser::Result::kError) failRequest(parser_.error().status);
  feeding_ = {};
  if (r == parser::RequestParser::Result::kError) return;
  if (tunnel_) {
    if (parser_.paused()) deliverTunnelLeftovers();
    return;
  }
  auto after = parser_.phase();
  if (after == parser::RequestParser::Phase::kBody ||
      (after == parser::RequestParser::Phase::kIdle && transport_.state() == Transport::State::kOpen)) {
    phaseStartMs_ = reactor_.nowMs();  // the body deadline counts from the last body byte
  }
}

// After a 101: the request's leftovers and everything after go to the handler.
void Http1Session::deliverTunnelLeftovers() {
  std::string rest = parser_.takeBuffered();
  if (!rest.empty() && exchange_ && exchange_->listener()) exchange_->listener()->onBody(rest);
}

void Http1Session::onEof() {
  if (tunnel_ && exchange_ && exchange_->listener()) {
    exchange_->listener()->onBodyEnd();  // the tunnel's handler closes both sides
    return;
  }
  if (transport_.pendingBytes() > 0) {
    // The client half-closed after sending its requests: finish the answers.
    transport_.closeAfterOutput();
    return;
  }
  transport_.close();
}

void Http1Session::onDrained() {
  if (exchange_ && exchange_->waitingDrain) {
    exchange_->waitingDrain = false;
    if (exchange_->listener()) exchange_->listener()->onDrain();
  }
  if (transport_.state() == Transport::State::kOpen && parser_.phase() == parser::RequestParser::Phase::kIdle) {
    phaseStartMs_ = reactor_.nowMs();
    if (reactor_.draining()) transport_.closeAfterOutput();
  }
}

void Http1Session::onTick(uint64_t now) {
  if (exchange_ && parser_.paused()) return;  // the handler is still at work: its time, not the client's
  const Timeouts& t = reactor_.config().timeouts;
  if (handedOff_) {
    // Its handler had the header timeout to answer the failed request.
    if (now - phaseStartMs_ >= t.headerMs) transport_.closeSoon();
    return;
  }
  switch (parser_.phase()) {
    case parser::RequestParser::Phase::kIdle:
      if (now - phaseStartMs_ >= idleMs_) transport_.close();
      break;
    case parser::RequestParser::Phase::kHead:
      if (listenerDeadlines_) {
        if ((headDeadlineMs_ && now - requestStartMs_ >= headDeadlineMs_) ||
            (requestDeadlineMs_ && now - requestStartMs_ >= requestDeadlineMs_) ||
            (t.headerExplicit && now - phaseStartMs_ >= t.headerMs)) {
          failRequest(408);
        }
      } else if (now - phaseStartMs_ >= t.headerMs) {
        failRequest(408);
      }
      break;
    case parser::RequestParser::Phase::kBody:
      // A handler that stopped reading owns the wait, not the client.
      if (transport_.readPaused()) break;
      if (listenerDeadlines_) {
        if ((requestDeadlineMs_ && now - requestStartMs_ >= requestDeadlineMs_) ||
            (t.bodyExplicit && now - phaseStartMs_ >= t.bodyMs)) {
          failRequest(408);
        }
      } else if (now - phaseStartMs_ >= t.bodyMs) {
        failRequest(408);
      }
      break;
  }
}

// ---------------------------------------------------------------- requests

void Http1Session::onHeaders(const parser::Request& req) {
  ++requests_;
  if (reactor_.context().observing()) beginAccounting(req);
  http10_ = req.versionMinor == 0;
  headOnly_ = req.isHead;
  chunked_ = false;
  status_ = 0;
  respBytes_ = 0;
  keepAlive_ = req.keepAlive && !reactor_.draining() && requests_ < reactor_.config().maxRequestsPerConnection;
  // Routed once, here: the handler answers this request to its end.
  active_ = listenerHandler_ ? listenerHandler_ : reactor_.context().router().route(req, table_);
  if (req.expectContinue && (req.contentLength > 0 || req.chunked) && !active_->answersContinue()) {
    transport_.output().buffer().append("HTTP/1.1 100 Continue\r\n\r\n");
    transport_.flush();
  }
  exchange_ = newExchange();
  exchange_->setHead(headOnly_);
  if (active_ == listenerHandler_) toldHandler_ = true;
  if (active_->takesBody()) active_->onRequest(req, exchange_);
}

void Http1Session::onBody(const parser::Request&, std::string_view chunk) {
  // A handler that takes no body never sees it: it is counted (limits) and dropped.
  if (exchange_ && exchange_->listener() && active_->takesBody()) exchange_->listener()->onBody(chunk);
}

bool Http1Session::onRequest(const parser::Request& req) {
  if (!exchange_) return false;  // the connection went away while the handler ran
  if (!active_->takesBody()) {
    active_->onRequest(req, exchange_);
  } else if (exchange_->listener()) {
    // (An upgraded exchange's onBodyEnd is the new protocol's end: the EOF.)
    if (exchange_->tunnel()) {
      exchange_->listener()->onSwitched();
    } else {
      if (!parser_.trailers().empty()) exchange_->setRequestTrailers(parser_.trailers());
      exchange_->listener()->onBodyEnd();
    }
  }
  if (exchange_ && !exchange_->ended()) return false;  // resumed by sendEnd()
  if (startUs_) endAccounting();
  transport_.flush();
  if (exchange_) {
    exchange_->detach();
    spare_ = std::move(exchange_);
  }
  if (!keepAlive_) {
    transport_.closeAfterOutput();
    return false;  // stop parsing: whatever follows is not answered
  }
  return true;
}

// The answer of a request whose parsing was paused is complete: go on.
void Http1Session::finishRequest() {
  if (startUs_) endAccounting();
  transport_.flush();
  // Whatever is left of the request body is read (and dropped), as Node does,
  // so the connection can go on.
  transport_.setReadPaused(false);
  if (inParser_ || !parser_.paused()) return;  // onRequest carries on by itself
  exchange_->detach();
  spare_ = std::move(exchange_);
  if (!keepAlive_) {
    transport_.closeAfterOutput();
    return;
  }
  if (transport_.state() != Transport::State::kOpen) return;
  inParser_ = true;
  auto r = parser_.resume();
  inParser_ = false;
  if (r == parser::RequestParser::Result::kError) failRequest(parser_.error().status);
}

// A request could not be parsed or timed out: answer, then close. A handler
// that was answering it is told the client is gone.
void Http1Session::failRequest(int status) {
  keepAlive_ = false;
  // A HEAD request refused after its head (a bad body, a body too slow) gets
  // the error's head only; before it, the request's method is unknown.
  headOnly_ = headOnly_ && parser_.phase() == parser::RequestParser::Phase::kBody;
  http10_ = false;
  if (reactor_.context().observing() && !startUs_) {
    // Refused before its head was whole: counted, logged without a request line.
    startUs_ = monotonicMicros();
    logLine_.clear();
    logRefAt_ = logUaAt_ = 0;
  }
  bool started = exchange_ && exchange_->headersSent();
  // (The answer is whole while the body is still coming: as Node, a script's
  // 'clientError' listener may still write after it.)
  bool answered = started && exchange_->ended();
  dropExchange();
  if ((!started || answered) && offerClientError(status)) return;
  if (started) {
    // Part of an answer went out already: it can only be cut short.
    if (startUs_) endAccounting();
    transport_.closeSoon();
    return;
  }
  std::string lines, body;
  errorPage(status, lines, body);
  writeHead(status, {}, lines, int64_t(body.size()), Exchange::kNoKeepAliveHeader, true);
  if (!headOnly_) transport_.output().buffer().append(body);
  respBytes_ = headOnly_ ? 0 : body.size();
  if (startUs_) endAccounting();
  transport_.flush();
  transport_.closeAfterOutput();
}

// A script's server may answer a failed request itself (Node's 'clientError'):
// true when it took it, and nothing more is read from the connection.
bool Http1Session::offerClientError(int status) {
  if (!listenerHandler_ || handedOff_) return false;
  int port = transport_.peerPort();
  server::Handler::ClientError e{transport_.id(), status, parser_.error().reason ? parser_.error().reason : "",
                                 feeding_, transport_.peerAddress(), port, transport_.isTls()};
  if (status == 408) e.reason = "request timeout";
  if (!listenerHandler_->onClientError(e)) return false;
  handedOff_ = true;
  toldHandler_ = true;
  status_ = status;
  respBytes_ = 0;
  if (startUs_) endAccounting();
  phaseStartMs_ = reactor_.nowMs();
  transport_.setReadPaused(true);
  return true;
}

// ---------------------------------------------------------------- bytes out

void Http1Session::writeHead(int status, std::string_view reason, std::string_view headerLines, int64_t length,
                             int keepAliveSeconds, bool serverField, uint8_t headFlags) {
  status_ = status;
  if (reactor_.draining()) keepAlive_ = false;  // shutting down: this is the last answer
  if (keepAliveSeconds == Exchange::kCloseConnection) keepAlive_ = false;
  std::string& b = transport_.output().buffer();
  std::string_view date = reactor_.dateLine();
  b.reserve(b.size() + 48 + date.size() + headerLines.size() + 64);
  if (reason.empty() || reason == statusReason(status)) {
    b.append(statusLine(status));
  } else {
    b.append("HTTP/1.1 ");
    appendNumber(b, uint64_t(status));
    b.push_back(' ');
    b.append(reason);
    b.append("\r\n");
  }
  auto framing = [&] {
    if (length >= 0) {
      b.append("Content-Length: ", 16);
      appendNumber(b, uint64_t(length));
      b.append("\r\n", 2);
    } else if (chunked_ && !(headFlags & Exchange::kOwnTransferEncoding)) {
      b.append("Transfer-Encoding: chunked\r\n", 28);
    }
  };
  if (headFlags & Exchange::kNodeOrder) {
    // A script's head, laid out as Node's http lays it out: the handler's
    // fields (its own Date, Connection, Keep-Alive as given), then what it
    // left to the server, then the framing.
    b.append(headerLines);
    if (!(headFlags & Exchange::kOwnDate)) b.append(date);
    if (!(headFlags & Exchange::kOwnConnection)) {
      if (!keepAlive_) {
        b.append("Connection: close\r\n", 19);
      } else {
        b.append("Connection: keep-alive\r\n", 24);
        if (keepAliveSeconds > 0) idleMs_ = uint32_t(keepAliveSeconds) * 1000;
        // (Node: none when the handler set its own, or keepAliveTimeout is 0.)
        if (!(headFlags & Exchange::kOwnKeepAlive) && keepAliveSeconds != Exchange::kNoKeepAliveHeader &&
            keepAliveSeconds != 0) {
          b.append("Keep-Alive: timeout=");
          appendNumber(b, idleMs_ / 1000);
          if (keepAliveMax_ > 0) {
            b.append(", max=", 6);
            appendNumber(b, keepAliveMax_);
          }
          b.append("\r\n", 2);
        }
      }
    } else if (keepAlive_ && keepAliveSeconds > 0) {
      idleMs_ = uint32_t(keepAliveSeconds) * 1000;
    }
    framing();
    b.append("\r\n", 2);
    return;
  }
  if (serverField) b.append("Server: kuai\r\n", 14);
  b.append(date);
  b.append(headerLines);
  framing();
  if (!keepAlive_) {
    b.append("Connection: close\r\n\r\n", 21);
  } else if (keepAliveSeconds == Exchange::kNoKeepAliveHeader) {
    if (http10_) {
      b.append("Connection: keep-alive\r\n\r\n", 26);
    } else {
      b.append("\r\n", 2);
    }
  } else {
    // As Node does: say the connection stays open, and for how long.
    if (keepAliveSeconds > 0) idleMs_ = uint32_t(keepAliveSeconds) * 1000;
    b.append("Connection: keep-alive\r\nKeep-Alive: timeout=");
    appendNumber(b, idleMs_ / 1000);
    b.append("\r\n\r\n");
  }
}

void Http1Session::sendHead(Exchange& ex, int status, std::string_view reason, std::string_view headerLines,
                            int64_t length, int keepAliveSeconds, bool serverField) {
  int64_t field = -1;
  if (length >= 0) {
    if (status != 204 && status != 304) field = length;
  } else if (length == -1 && !ex.bodyless()) {
    if (http10_) {
      keepAlive_ = false;  // the body ends when the connection does
    } else {
      chunked_ = true;
    }
  }
  keepAliveMax_ = ex.keepAliveMax();
  writeHead(status, reason, headerLines, field, keepAliveSeconds, serverField, ex.headFlags());
  keepAliveMax_ = 0;
  transport_.flush();
}

void Http1Session::sendBody(Exchange&, std::string_view bytes) {
  std::string& b = transport_.output().buffer();
  if (chunked_) {
    char hex[20];
    int n = std::snprintf(hex, sizeof(hex), "%zx\r\n", bytes.size());
    b.append(hex, size_t(n));
    b.append(bytes);
    b.append("\r\n", 2);
  } else {
    b.append(bytes);
  }
  respBytes_ += bytes.size();
  transport_.flush();
}

void Http1Session::sendFile(Exchange&, std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) {
  transport_.output().appendFile(std::move(file), offset, length);
  respBytes_ += length;
  transport_.flush();
}

void Http1Session::sendEnd(Exchange& ex) {
  if (chunked_ && !ex.bodyless()) {
    std::string& b = transport_.output().buffer();
    b.append("0\r\n", 3);
    b.append(ex.trailers());
    b.append("\r\n", 2);
  }
  if (exchange_.get() == &ex) finishRequest();
}

void Http1Session::sendInformational(Exchange&, int status, std::string_view headerLines) {
  if (http10_) return;  // an HTTP/1.0 client knows no 1xx (RFC 9110 15.2)
  std::string& b = transport_.output().buffer();
  b.append(statusLine(status));
  b.append(headerLines);
  b.append("\r\n", 2);
  transport_.flush();
}

void Http1Session::switchProtocols(Exchange&, std::string_view headerLines, bool writeHead) {
  if (writeHead) {
    std::string& b = transport_.output().buffer();
    b.append("HTTP/1.1 101 Switching Protocols\r\n");
    b.append(headerLines);
    b.append("\r\n");
    transport_.flush();
  }
  tunnel_ = true;
  // Inside the parser (a handler that switched while the request was being
  // parsed), feed() hands over the rest once the request is whole; so does a
  // switch made while its body is still coming.
  if (!inParser_ && parser_.paused()) deliverTunnelLeftovers();
}

void Http1Session::sendRaw(Exchange&, std::string_view bytes) {
  transport_.output().buffer().append(bytes);
  transport_.flush();
}

void Http1Session::abortResponse(Exchange& ex) {
  // What was queued goes out first; then the connection closes, short of what
  // the response announced.
  keepAlive_ = false;
  if (startUs_) endAccounting();
  if (exchange_.get() == &ex) {
    exchange_->detach();
    exchange_.reset();
  }
  transport_.closeSoon();
}

void Http1Session::setReading(Exchange&, bool on) {
  transport_.setReadPaused(!on);
  if (on) phaseStartMs_ = reactor_.nowMs();  // the body deadline starts again
}

// ---------------------------------------------------------------- metrics and log

void Http1Session::beginAccounting(const parser::Request& req) {
  startUs_ = monotonicMicros();
  if (!reactor_.context().logging()) return;
  logLine_.clear();
  logLine_.append(req.method).push_back(' ');
  logLine_.append(req.target).append(req.versionMinor == 0 ? " HTTP/1.0" : " HTTP/1.1");
  logRefAt_ = uint32_t(logLine_.size());
  logLine_.append(req.header("referer"));
  logUaAt_ = uint32_t(logLine_.size());
  logLine_.append(req.header("user-agent"));
}

void Http1Session::endAccounting() {
  if (!startUs_) return;
  uint64_t us = monotonicMicros() - startUs_;
  startUs_ = 0;
  reactor_.context().stats().record(status_, us, ReactorStats::kHttp1);
  if (!reactor_.context().logging()) return;
  std::string_view line(logLine_);
  formatCombined(reactor_.context().logBuffer(), transport_.peerAddress(), reactor_.nowSeconds(), line.substr(0, logRefAt_),
                 status_, respBytes_, line.substr(logRefAt_, logUaAt_ - logRefAt_), line.substr(logUaAt_));
}

}  // namespace kuai::server
