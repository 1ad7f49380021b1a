// The seams through which code outside server/ (the scripting layer) plugs into a
// reactor without server/ knowing anything of V8 or Node:
//  - AsyncHandler: answers the requests of a listener, possibly later;
//  - Exchange: one request/response in flight for an AsyncHandler;
//  - LoopDriver: an event loop (libuv) that the reactor drives on its thread.
// Everything here lives on one reactor thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "parser/request_parser.h"

namespace kuai::server {

class Connection;
class Exchange;

// Receives an Exchange's events. Implemented by the JS request object's owner.
class ExchangeListener {
 public:
  virtual ~ExchangeListener() = default;
  virtual void onBody(std::string_view chunk) = 0;
  virtual void onBodyEnd() = 0;
  // The connection went away before the response ended (client abort).
  virtual void onAbort() = 0;
  // Output fell below the backpressure mark after write() returned false.
  virtual void onDrain() = 0;
  // The response's last byte was handed to the kernel.
  virtual void onFinish() = 0;
};

// One request and its response, for handlers that answer asynchronously.
// Shared between the connection and the handler; the connection drops its side
// (valid() turns false) when it closes.
class Exchange {
 public:
  explicit Exchange(Connection* conn) : conn_(conn) {}

  bool valid() const { return conn_ != nullptr; }
  bool ended() const { return ended_; }
  bool headersSent() const { return headersSent_; }

  // Status line, Server and Date are added by the connection; `headerLines` are
  // complete lines. contentLength < 0: chunked (HTTP/1.1) or close-delimited.
  // keepAliveSeconds >= 0: the idle time to announce (Keep-Alive: timeout=N)
  // and keep to on this connection (Node's server.keepAliveTimeout);
  // kNoKeepAliveHeader: no Keep-Alive line (HTTP/1.1's default is enough).
  void writeHead(int status, std::string_view reason, std::string_view headerLines,
                 int64_t contentLength, int keepAliveSeconds = -1);
  static constexpr int kNoKeepAliveHeader = -2;
  // The whole response: a short text/plain page ("502 Bad Gateway\n"), as
  // the connection writes for its own errors.
  void writeError(int status);
  // Returns false when the client is slow: wait for onDrain.
  bool write(std::string_view bytes);
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
  // decides (see AsyncHandler::answersContinue).
  void writeContinue();
  // The response cannot be completed (its source failed midway): close the
  // connection so the client sees a truncated response, never a wrong one.
  void abort();
  // Bytes not yet handed to the kernel on this connection.
  size_t pendingBytes() const;
  // Backpressure on the request body: stop / restart reading the connection.
  void pauseBody();
  void resumeBody();

  void setListener(ExchangeListener* l) { listener_ = l; }
  ExchangeListener* listener() const { return listener_; }
  std::string_view remoteAddress() const { return remoteAddress_; }
  int remotePort() const { return remotePort_; }
  bool encrypted() const { return encrypted_; }
  uint64_t connectionId() const { return connectionId_; }
  void setConnectionId(uint64_t id) { connectionId_ = id; }
  bool headRequest() const { return head_; }

  // For the connection.
  void detach() { conn_ = nullptr; }
  void setPeer(std::string addr, int port, bool tls) {
    remoteAddress_ = std::move(addr);
    remotePort_ = port;
    encrypted_ = tls;
  }
  void setHead(bool head, bool http10) {
    head_ = head;
    http10_ = http10;
  }
  bool waitingDrain = false;

 private:
  Connection* conn_;
  ExchangeListener* listener_ = nullptr;
  bool ended_ = false;
  bool headersSent_ = false;
  bool chunked_ = false;
  bool head_ = false;
  bool http10_ = false;
  bool noBody_ = false;
  bool tunnel_ = false;
  bool continued_ = false;
  std::string remoteAddress_;
  int remotePort_ = 0;
  bool encrypted_ = false;
  uint64_t connectionId_ = 0;
};

class AsyncHandler {
 public:
  virtual ~AsyncHandler() = default;
  // A request head has arrived (its body follows through the Exchange).
  virtual void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) = 0;
  // A connection that brought requests here has closed.
  virtual void onConnectionClose(uint64_t connectionId) {}
  // True: the handler answers Expect: 100-continue itself (writeContinue);
  // false: the connection sends 100 Continue as soon as the head is in.
  virtual bool answersContinue() const { return false; }
};

class LoopDriver {
 public:
  virtual ~LoopDriver() = default;
  virtual int fd() const = 0;          // readable when the loop has I/O to handle
  virtual int timeoutMs() const = 0;   // until the loop's next timer; -1 none; 0 now
  virtual void runOnce() = 0;          // one non-blocking turn of the loop
  virtual bool alive() const = 0;      // the loop still has handles or requests
  // Runs `work` (the processing of one wake-up's completions) inside one scope
  // for calls into the loop's code: with JS, one callback scope per batch, so
  // next-ticks and promise jobs run once the batch is handled.
  virtual void runBatch(void (*work)(void*), void* arg) { work(arg); }
};

}  // namespace kuai::server
