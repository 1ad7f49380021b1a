// Connection: one accepted HTTP/1.x connection. Owned by its Reactor, which alone
// creates, drives and destroys it, on the reactor's thread; a connection never
// changes thread. It parses what the backend hands it, runs the router, queues
// responses in request order and tells the reactor when output is waiting.
#pragma once

#include <cstdint>
#include <ctime>
#include <string_view>

#include "parser/request_parser.h"
#include "server/hooks.h"
#include "server/output_queue.h"
#include "tls/tls.h"

namespace kuai::server {

class Reactor;

// 16-byte aligned: the backends tag pointers with their low bits.
class alignas(16) Connection final : public parser::RequestParser::Handler {
 public:
  enum class State : uint8_t {
    kOpen,       // reading requests
    kClosing,    // last response queued: flush it, then linger
    kLingering,  // our side shut down; reading leftovers until EOF or timeout
    kClosed,     // waiting for the backend to release it
  };

  Connection(Reactor& reactor, int fd, std::unique_ptr<tls::TlsSession> tls = nullptr,
             AsyncHandler* handler = nullptr);
  ~Connection() override;

  int fd() const { return fd_; }
  State state() const { return state_; }
  // Responses as written (plaintext).
  OutputQueue& output() { return out_; }
  // What the backend sends: the responses themselves, or their TLS records.
  OutputQueue& wire() { return tls_ ? tlsOut_ : out_; }
  // Moves output into wire() (encrypting for TLS). Cheap no-op for plaintext.
  void fillWire();
  bool isTls() const { return tls_ != nullptr; }

  // Backend -> connection.
  void onData(const char* data, size_t len);
  void onEof();
  // Checks this connection's deadline; nowMs is the reactor's monotonic clock.
  void onTick(uint64_t nowMs);
  // All queued output has been sent.
  void onDrained();
  // Graceful shutdown has begun: idle connections close now, busy ones after
  // their current response.
  void onShutdown();
  bool idle() const;
  // The reactor closed it: nothing more is read or sent. (Queued output is freed
  // with the connection: an io_uring send may still be reading it.)
  void markClosed() {
    state_ = State::kClosed;
    dropExchange();
  }

  // Response writing (router -> connection).
  // Status line, Server, Date, the given header lines, Content-Length (unless
  // omitted) and Connection, then the blank line.
  void writeHead(int status, std::string_view headerLines, uint64_t contentLength,
                 bool withLength = true);
  void writeBody(std::string_view bytes) { out_.buffer().append(bytes); }
  void writeFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length);
  // A complete short text/plain response ("404 Not Found\n").
  void writeError(int status, std::string_view extraHeaders = {});
  // The request being answered is a HEAD (no body bytes may follow the head).
  bool headOnly() const { return headOnly_; }
  // Asynchronous responses (Exchange -> connection).
  void writeHeadWithReason(int status, std::string_view reason, std::string_view headerLines,
                           int keepAliveSeconds = -1);
  bool keepAlive() const { return keepAlive_; }
  void setKeepAlive(bool on) { keepAlive_ = on; }
  bool http10() const { return http10_; }
  size_t pendingBytes() const;
  void exchangeWrote();                // output queued: flush at the end of this turn
  void exchangeEnded(Exchange* ex);    // the response is complete
  void abortExchange();                // the response broke midway: close
  void countBody(size_t n) { respBytes_ += n; }
  // Node's timeouts instead of kuai's: the head within headersMs, the whole
  // request within requestMs (0: none), no limit on pauses inside a body.
  void useNodeTimeouts(uint32_t headersMs, uint32_t requestMs) {
    nodeTimeouts_ = true;
    headersMs_ = headersMs;
    requestMs_ = requestMs;
  }
  void startTunnel();                  // 101 sent: bytes pass through from now on
  void deliverTunnelLeftovers();
  void setReadPaused(bool paused);     // the handler is (not) taking the body
  time_t reactorNowSeconds() const;

  // Intrusive list of the reactor's connections.
  Connection* prev = nullptr;
  Connection* next = nullptr;
  // Backend bookkeeping (io_uring: operations in flight; epoll: interest set).
  uint8_t backendFlags = 0;
  uint8_t opsInFlight = 0;
  bool dirty = false;  // on the reactor's flush list

 private:
  // parser::RequestParser::Handler
  void onHeaders(const parser::Request& req) override;
  void onBody(const parser::Request& req, std::string_view chunk) override;
  bool onRequest(const parser::Request& req) override;

  void feedParser(const char* data, size_t len);
  void dropExchange();  // the connection is going away: tell the handler
  void onTlsData(const char* data, size_t len);
  void failRequest(int status);
  void closeAfterResponse();
  void wantFlush();
  // Metrics and access log (only while the reactor observes).
  void beginAccounting(const parser::Request& req);
  void endAccounting();
  const std::string& peerAddress();

  Reactor& reactor_;
  int fd_;
  State state_ = State::kOpen;
  parser::RequestParser parser_;
  OutputQueue out_;
  std::unique_ptr<tls::TlsSession> tls_;
  OutputQueue tlsOut_;       // TLS records waiting to be sent
  bool closeNotifySent_ = false;
  bool peerClosed_ = false;  // EOF (or close_notify) from the client
  uint32_t requests_ = 0;
  bool keepAlive_ = true;   // for the response being written
  bool http10_ = false;
  bool headOnly_ = false;
  AsyncHandler* handler_ = nullptr;     // the listener's (a script's server); null: the router's
  AsyncHandler* active_ = nullptr;      // answering the current request; null: router.handle()
  std::shared_ptr<Exchange> exchange_;  // the request an AsyncHandler is answering
  bool inParser_ = false;               // inside parser_.feed()/resume()
  bool readPaused_ = false;             // reading stopped for the handler
  bool tunnel_ = false;                 // upgraded: bytes go to the handler as they are
  bool toldHandler_ = false;            // handler_ saw requests: tell it of the close
  uint64_t id_ = 0;                     // per reactor, for handlers
  uint32_t idleMs_ = 0;                 // idle keep-alive timeout (config or handler's)
  std::string peerAddress_;             // filled on first use (getpeername)
  int peerPort_ = -1;
  int status_ = 0;             // of the response being written
  uint64_t respBytes_ = 0;     // its body bytes
  uint64_t startUs_ = 0;       // when its request's head was complete (0: not counted)
  std::string logLine_;        // request line, referer and agent for the access log
  uint32_t logRefAt_ = 0, logUaAt_ = 0;
  bool nodeTimeouts_ = false;
  uint32_t headersMs_ = 0;
  uint32_t requestMs_ = 0;
  uint64_t requestStartMs_ = 0;  // when the current request's head began
  uint64_t phaseStartMs_ = 0;  // when the current phase (idle/head/body/linger) began
  uint64_t lastProgressMs_ = 0;
};

}  // namespace kuai::server
