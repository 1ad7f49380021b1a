// The request path's core types, shared by every protocol and every handler:
//  - Handler: answers the requests of a route (static files, fixed answers,
//    the metrics page, the proxy, scripts); the router picks one per request,
//    once, when its head is parsed;
//  - Exchange: one request and its response: the one way every handler
//    answers, whatever the protocol;
//  - ExchangeSink: the protocol's side of an exchange (an HTTP/1.1 session
//    today; HTTP/2 plugs in as a second sink), which turns the response into
//    bytes: status line and framing, chunks, files.
// Everything here lives on one reactor thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "parser/request_parser.h"

namespace kuai::tls {
class TlsSession;
}

namespace kuai::server {

struct HeaderRules;
struct CompressionSpec;
class Compressor;
enum class Encoding : uint8_t;

class Exchange;
struct OpenFile;

// Receives an Exchange's events: the request body and what happens to the
// response. Set by a handler that takes the body (the proxy, scripts).
class ExchangeListener {
 public:
  virtual ~ExchangeListener() = default;
  virtual void onBody(std::string_view chunk) = 0;
  virtual void onBodyEnd() = 0;
  // The connection went away before the response ended (client abort).
  virtual void onAbort() = 0;
  // Output fell below the backpressure mark after write() returned false.
  virtual void onDrain() = 0;
  // A protocol switch made before its request was whole: the request (its
  // body) ends here, and the onBody chunks after this are the new protocol's.
  virtual void onSwitched() {}
};

// The protocol's side of an exchange: it writes the head with the framing its
// protocol needs, the body, files, and the end.
class ExchangeSink {
 public:
  virtual ~ExchangeSink() = default;
  // The head (see Exchange::writeHead). `length` < 0: not known in advance.
  virtual void sendHead(Exchange& ex, int status, std::string_view reason, std::string_view headerLines,
                        int64_t length, int keepAliveSeconds, bool serverField) = 0;
  virtual void sendBody(Exchange& ex, std::string_view bytes) = 0;
  // The same, for bytes that `hold` keeps alive and unchanged (a cached
  // file): a protocol that sends them later may keep them instead of a copy.
  virtual void sendBodyHeld(Exchange& ex, std::string_view bytes, const std::shared_ptr<const void>& hold) {
    sendBody(ex, bytes);
  }
  virtual void sendFile(Exchange& ex, std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) = 0;
  // The end of the body; Exchange::trailers() go with it where the framing
  // carries them (HTTP/1.1 chunked).
  virtual void sendEnd(Exchange& ex) = 0;
  // An interim response (100 Continue, 103 Early Hints) before the head.
  virtual void sendInformational(Exchange& ex, int status, std::string_view headerLines) = 0;
  // 101: `headerLines` go out with it (writeHead), or the handler writes its
  // own (raw); bytes pass through untouched both ways from now on.
  virtual void switchProtocols(Exchange& ex, std::string_view headerLines, bool writeHead) = 0;
  virtual void sendRaw(Exchange& ex, std::string_view bytes) = 0;
  // The response cannot be completed: the client must see it cut short.
  virtual void abortResponse(Exchange& ex) = 0;
  virtual size_t pendingBytes(const Exchange& ex) const = 0;
  virtual void setReading(Exchange& ex, bool on) = 0;
  // The client's side of the connection.
  virtual std::string_view peerAddress() = 0;
  virtual int peerPort() = 0;
  // This end of the connection (the address the client reached).
  virtual std::string localAddress(int& port) = 0;
  virtual bool encrypted() const = 0;
  // The connection's TLS session (null in clear text).
  virtual const tls::TlsSession* tlsSession() const { return nullptr; }
  virtual uint64_t connectionId() const = 0;
  // The connection's bytes so far (Transport::bytesRead/bytesWritten).
  virtual void connectionBytes(uint64_t& read, uint64_t& written) const = 0;
};

class Exchange {
 public:
  explicit Exchange(ExchangeSink* sink);
  ~Exchange();

  bool valid() const { return sink_ != nullptr; }
  bool ended() const { return ended_; }
  bool headersSent() const { return headersSent_; }

  // The response head: status (reason empty: the standard phrase), header
  // lines ("Name: value\r\n" each; the protocol adds Date, framing and, with
  // serverField, Server), and the body's length (-1: not known, the protocol
  // frames it: chunked, or until the close for HTTP/1.0). A body longer than
  // `contentLength` is cut to it; end() before all of it is an abort().
  // keepAliveSeconds >= 0: announce and keep this idle time (Node's
  // server.keepAliveTimeout); kNoKeepAliveHeader: no Keep-Alive field.
  void writeHead(int status, std::string_view reason, std::string_view headerLines, int64_t contentLength,
                 int keepAliveSeconds = -1, bool serverField = false);
  static constexpr int kNoKeepAliveHeader = -2;
  // The handler asked for the connection to end with this response
  // (Connection: close; HTTP/2 has no such field and ignores it).
  static constexpr int kCloseConnection = -3;
  // How a script's head is laid out (Node's http: its fields, then Date,
  // Connection and Keep-Alive, then the framing), set before writeHead.
  // kOwnDate: the lines carry the Date field, or the handler wants none
  // (sendDate false); kOwnConnection / kOwnKeepAlive: the lines carry the
  // handler's Connection / Keep-Alive field, written as given;
  // kOwnTransferEncoding: its Transfer-Encoding field (a body framed in
  // chunks, length -1, gets no second one).
  static constexpr uint8_t kNodeOrder = 1, kOwnDate = 2, kOwnConnection = 4, kOwnKeepAlive = 8,
                           kOwnTransferEncoding = 16;
  void setHeadFlags(uint8_t flags) { headFlags_ = flags; }
  uint8_t headFlags() const { return headFlags_; }
  // Node's maxRequestsPerSocket for a script's head: `max=` in its
  // Keep-Alive field (0: none).
  void setKeepAliveMax(uint32_t n) { keepAliveMax_ = n; }
  uint32_t keepAliveMax() const { return keepAliveMax_; }
  // kuai's own short text/plain page ("404 Not Found\n"), with Server; the
  // one error page of every route, protocol and handler.
  void writeError(int status, std::string_view extraHeaders = {});
  // Returns false when the client is slow: wait for onDrain.
  bool write(std::string_view bytes) { return send(bytes, nullptr); }
  // write() for bytes that `hold` keeps alive and unchanged (a cached file).
  bool writeHeld(std::string_view bytes, const std::shared_ptr<const void>& hold) { return send(bytes, &hold); }
  // A file range as the body (sendfile where the protocol allows).
  void sendFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length);
  void end();
  // Switches the connection to another protocol (a proxied WebSocket): sends
  // "101 Switching Protocols" with `headerLines`, then bytes pass through
  // untouched both ways: write() sends them raw, the listener's onBody gets
  // the client's, onBodyEnd its EOF.
  void acceptUpgrade(std::string_view headerLines);
  bool tunnel() const { return tunnel_; }
  // The same switch with nothing written: the handler writes its own 101 (a
  // script's 'upgrade' listener, e.g. a WebSocket library).
  void startRaw();
  // "100 Continue" for a request with Expect: 100-continue, when the handler
  // decides (see Handler::answersContinue).
  void writeContinue();
  // Another 1xx before the head (103 Early Hints with its Link lines).
  void writeInformational(int status, std::string_view headerLines);
  // Trailer fields ("Name: value\r\n" lines) sent with the end of a body
  // framed in chunks, or as HTTP/2's trailing HEADERS; other framings have
  // no room for them and drop them.
  void setTrailers(std::string lines) { trailers_ = std::move(lines); }
  const std::string& trailers() const { return trailers_; }
  // The request's trailer fields (after a chunked body, or HTTP/2's
  // trailing HEADERS), the same way; set before the listener's onBodyEnd.
  void setRequestTrailers(std::string lines) { requestTrailers_ = std::move(lines); }
  const std::string& requestTrailers() const { return requestTrailers_; }
  // The response cannot be completed (its source failed midway): the client
  // sees it truncated, never a wrong one.
  void abort();
  // abort() with the code HTTP/2 puts in its RST_STREAM (a script's
  // stream.close(code)); HTTP/1.1 closes the connection as for abort().
  void abort(uint32_t http2Code) {
    resetCode_ = int64_t(http2Code);
    abort();
  }
  // The code abort(code) asked for; -1: none (the protocol's own).
  int64_t resetCode() const { return resetCode_; }
  // The code of the client's RST_STREAM that cut this exchange short (HTTP/2),
  // set before the listener's onAbort; -1: none.
  void setPeerResetCode(uint32_t code) { peerResetCode_ = int64_t(code); }
  int64_t peerResetCode() const { return peerResetCode_; }
  // Bytes not yet handed to the kernel for this exchange's connection.
  size_t pendingBytes() const;
  // Past this many unsent bytes write() returns false (64 KiB; a script's
  // server.highWaterMark).
  void setHighWater(size_t bytes) { highWater_ = bytes; }
  // Backpressure on the request body: stop / restart reading it.
  void pauseBody();
  void resumeBody();

  void setListener(ExchangeListener* l) { listener_ = l; }
  ExchangeListener* listener() const { return listener_; }
  // The client (empty / 0 once the connection is gone).
  std::string_view remoteAddress() const { return sink_ ? sink_->peerAddress() : std::string_view(); }
  int remotePort() const { return sink_ ? sink_->peerPort() : 0; }
  // The address and port the client connected to (empty / 0 once it is gone).
  std::string localAddress(int& port) const {
    port = 0;
    return sink_ ? sink_->localAddress(port) : std::string();
  }
  bool encrypted() const { return sink_ && sink_->encrypted(); }
  const tls::TlsSession* tlsSession() const { return sink_ ? sink_->tlsSession() : nullptr; }
  uint64_t connectionId() const { return sink_ ? sink_->connectionId() : 0; }
  // False once the connection is gone.
  bool connectionBytes(uint64_t& read, uint64_t& written) const {
    if (!sink_) return false;
    sink_->connectionBytes(read, written);
    return true;
  }
  bool headRequest() const { return head_; }
  bool bodyless() const { return noBody_; }
  bool continued() const { return continued_; }

  // For the protocol.
  void detach() { sink_ = nullptr; }
  // Ready for another request of the same connection (an exchange nobody
  // else holds is used again rather than allocated).
  void reset(ExchangeSink* sink);
  void setHead(bool head) { head_ = head; }
  // The route's header rules, applied to the head when it is written (the
  // route table that owns them outlives the exchange's protocol side).
  void setHeaderRules(const HeaderRules* rules) { rules_ = rules; }
  // The client accepts `encoding` (negotiated from Accept-Encoding): a
  // response the spec finds worth it (type, size, not already encoded, no
  // no-transform, a 2xx other than 204/206, not HEAD) is compressed as it
  // is written, each write flushed so the client can decode it at once.
  void offerCompression(const CompressionSpec* spec, Encoding encoding);
  bool compressing() const { return compressor_ != nullptr; }
  bool waitingDrain = false;

 private:
  bool send(std::string_view bytes, const std::shared_ptr<const void>* hold);
  // writeHead's part for an offered compression: true (and the head's lines
  // rewritten into `lines`) when this response is compressed.
  bool startCompression(int status, std::string_view headerLines, int64_t contentLength, std::string& lines);

  ExchangeSink* sink_;
  ExchangeListener* listener_ = nullptr;
  const HeaderRules* rules_ = nullptr;
  const CompressionSpec* compressSpec_ = nullptr;
  uint8_t offered_ = 0;  // an Encoding
  std::unique_ptr<Compressor> compressor_;
  bool ended_ = false;
  bool headersSent_ = false;
  bool head_ = false;
  bool noBody_ = false;
  bool tunnel_ = false;
  bool continued_ = false;
  std::string trailers_;
  std::string requestTrailers_;
  int64_t resetCode_ = -1;
  int64_t peerResetCode_ = -1;
  uint8_t headFlags_ = 0;
  uint32_t keepAliveMax_ = 0;
  size_t highWater_ = kDefaultHighWater;
  static constexpr size_t kDefaultHighWater = 64 * 1024;
  int64_t unsent_ = -1;  // body bytes still due under the announced length (-1: none announced)
};

// Answers the requests of a route, or of a script's listener.
class Handler {
 public:
  virtual ~Handler() = default;
  // A request for this handler: with its head, when the handler takes the
  // body (it comes through the exchange's listener), or else once the whole
  // request is in (its body read and dropped by the protocol).
  virtual void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) = 0;
  virtual bool takesBody() const { return true; }
  // A connection that brought requests here has closed.
  virtual void onConnectionClose(uint64_t connectionId, uint64_t bytesRead, uint64_t bytesWritten) {}
  // True: the handler answers Expect: 100-continue itself (writeContinue);
  // false: the protocol sends 100 Continue as soon as the head is in.
  virtual bool answersContinue() const { return false; }
  // An HTTP/1 request on this handler's listener failed before it could reach
  // the handler (malformed, too large, timed out) and nothing of an answer has
  // gone out. True: the handler answers it, or not, writing raw bytes and
  // closing the connection through Reactor::answerClientError (a script's
  // 'clientError' listener); false: the protocol writes its error page.
  struct ClientError {
    uint64_t connectionId;
    int status;               // what the error page would have said
    std::string_view reason;  // the parser's words
    std::string_view rawPacket;  // the bytes being parsed when it failed (may be empty)
    std::string_view remoteAddress;
    int remotePort;
    bool encrypted;
  };
  virtual bool onClientError(const ClientError&) { return false; }
};

// The error page every route and protocol writes: its header lines and body.
// (Exchange::writeError uses it; so do the protocols for requests that never
// reached a handler: malformed, too large, timed out.)
void errorPage(int status, std::string& headerLines, std::string& body);

}  // namespace kuai::server
