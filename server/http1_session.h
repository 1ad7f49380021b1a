// Http1Session: HTTP/1.x over one Transport: the protocol layer that turns a
// connection's bytes into requests for the handlers and their answers back into
// bytes. It parses (parser::RequestParser, llhttp), routes each request once,
// when its head is parsed (the listener's handler, or the Router's), gives the
// handler an Exchange and serialises what the exchange writes: every response
// head goes through writeHead (status line, Server, Date, framing,
// Connection), chunked bodies, files. Keep-alive and pipelining (responses in
// request order: the next request is parsed once the current one's answer is
// complete), the head / body / idle deadlines, the metrics and access log.
// Owned by its Transport; on the reactor's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "parser/request_parser.h"
#include "server/exchange.h"
#include "server/transport.h"

namespace kuai::server {

struct Listener;

class Http1Session final : public Protocol, public ExchangeSink, private parser::RequestParser::Handler {
 public:
  // `listener`: where the connection came in; its handler (a script's
  // server) answers every request, else the Router picks one per request.
  Http1Session(Transport& transport, const Listener& listener);
  ~Http1Session() override;

  // Protocol.
  void onData(const char* data, size_t len) override;
  void onEof() override;
  void onDrained() override;
  void onTick(uint64_t nowMs) override;
  void onShutdown() override;
  bool idle() const override;
  bool fresh() const override { return requests_ == 0; }
  void onClose() override { dropExchange(); }
  void failPlainText() override { failRequest(400); }

  // ExchangeSink.
  void sendHead(Exchange& ex, int status, std::string_view reason, std::string_view headerLines, int64_t length,
                int keepAliveSeconds, bool serverField) override;
  void sendBody(Exchange& ex, std::string_view bytes) override;
  void sendFile(Exchange& ex, std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) override;
  void sendEnd(Exchange& ex) override;
  void sendInformational(Exchange& ex, int status, std::string_view headerLines) override;
  void switchProtocols(Exchange& ex, std::string_view headerLines, bool writeHead) override;
  void sendRaw(Exchange& ex, std::string_view bytes) override;
  void abortResponse(Exchange& ex) override;
  size_t pendingBytes(const Exchange&) const override { return transport_.pendingBytes(); }
  void setReading(Exchange& ex, bool on) override;
  std::string_view peerAddress() override { return transport_.peerAddress(); }
  int peerPort() override { return transport_.peerPort(); }
  std::string localAddress(int& port) override { return transport_.localAddress(port); }
  bool encrypted() const override { return transport_.isTls(); }
  const tls::TlsSession* tlsSession() const override { return transport_.tls(); }
  uint64_t connectionId() const override { return transport_.id(); }
  void connectionBytes(uint64_t& read, uint64_t& written) const override {
    read = transport_.bytesRead();
    written = transport_.bytesWritten();
  }

 private:
  // parser::RequestParser::Handler
  void onHeaders(const parser::Request& req) override;
  void onBody(const parser::Request& req, std::string_view chunk) override;
  bool onRequest(const parser::Request& req) override;

  // The one response head writer. `length` < 0: no Content-Length (the
  // caller framed it).
  void writeHead(int status, std::string_view reason, std::string_view headerLines, int64_t length,
                 int keepAliveSeconds, bool serverField, uint8_t headFlags = 0);
  // A request that cannot be answered normally (malformed, too large, timed
  // out): the error page, then close.
  void failRequest(int status);
  void feed(const char* data, size_t len);
  void deliverTunnelLeftovers();
  // The current request's answer is complete: go on with the next one.
  void finishRequest();
  void dropExchange();  // the connection is going away: tell the handler
  std::shared_ptr<const void> table_;  // the route table the current request was routed by
  std::shared_ptr<Exchange> newExchange();
  void beginAccounting(const parser::Request& req);
  void endAccounting();

  // The first bytes of a connection: hands it to HTTP/2 when the client speaks
  // it (ALPN h2, or the h2c preface). True when it did: return at once.
  bool handOver(const char* data, size_t len);
  bool offerClientError(int status);

  Transport& transport_;
  Reactor& reactor_;
  const Listener& listener_;
  bool started_ = false;   // the connection's first bytes were seen
  std::string preface_;    // the start of a possible h2c preface, held
  server::Handler* listenerHandler_;       // the listener's (a script's server); null: the router picks
  uint32_t headDeadlineMs_ = 0;    // the listener's own deadlines (0: the reactor's timeouts)
  uint32_t requestDeadlineMs_ = 0;
  bool listenerDeadlines_ = false;
  parser::RequestParser parser_;
  uint32_t requests_ = 0;
  bool keepAlive_ = true;   // for the response being written
  bool http10_ = false;
  bool headOnly_ = false;
  bool chunked_ = false;    // the current response is chunked
  server::Handler* active_ = nullptr;              // answering the current request
  std::shared_ptr<Exchange> exchange_;     // the current request's
  std::shared_ptr<Exchange> spare_;        // a finished one, to use again
  bool inParser_ = false;   // inside parser_.feed()/resume()
  bool tunnel_ = false;     // upgraded: bytes go to the handler as they are
  bool toldHandler_ = false;  // listenerHandler_ saw requests: tell it of the close
  bool handedOff_ = false;    // a parse error its handler answers (onClientError)
  std::string_view feeding_;  // the bytes in parser_.feed(), for onClientError
  uint32_t idleMs_ = 0;     // idle keep-alive timeout (config or handler's)
  int status_ = 0;          // of the response being written
  uint32_t keepAliveMax_ = 0;  // its Keep-Alive max= (a script's maxRequestsPerSocket)
  uint64_t respBytes_ = 0;  // its body bytes
  uint64_t startUs_ = 0;    // when its request's head was complete (0: not counted)
  std::string logLine_;     // request line, referer and agent for the access log
  uint32_t logRefAt_ = 0, logUaAt_ = 0;
  uint64_t requestStartMs_ = 0;  // when the current request's head began
  uint64_t phaseStartMs_ = 0;    // when the current phase (idle/head/body) began
};

}  // namespace kuai::server
