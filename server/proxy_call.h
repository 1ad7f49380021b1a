// ProxyCall: one proxied request, from the client's head to the upstream's
// last byte, on one UpstreamPool: it picks an upstream, sends the request
// (rewritten for the upstream: hop-by-hop fields dropped, X-Forwarded-*,
// Via), retries what may be retried (idempotent requests after a connect
// failure or a reset before any response byte; bodies up to 64 KiB are
// replayed), keeps the connect / send / read deadlines, streams bodies both
// ways with backpressure (a slow client pauses the upstream read at 64 KiB
// queued, a slow upstream pauses the client's body at 256 KiB) and tunnels
// after a 101. Its answer goes to a Downstream: a client's Exchange
// (exchangeDownstream) or a script's request (kuai's JS client).
// Created by its pool (newCall), freed after callDone; on the reactor's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "parser/response_parser.h"
#include "server/exchange.h"
#include "server/output_queue.h"
#include "server/upstream_pool.h"

namespace kuai::server {

// Where a proxied response goes: a client connection (through its Exchange),
// or a script's request (kuai's JS client). ProxyCall drives it.
class Downstream {
 public:
  virtual ~Downstream() = default;
  virtual bool valid() const = 0;        // still someone to answer
  virtual bool headersSent() const = 0;
  virtual void head(const parser::Response& resp) = 0;     // final response head
  virtual void upgrade(const parser::Response& resp) = 0;  // 101: tunnel from now on
  virtual bool write(std::string_view bytes) = 0;          // false: wait for resumeUpstream
  virtual void end() = 0;
  // The response broke after its head: the receiver must see it incomplete.
  virtual void abort() = 0;
  // No response could be had: 502 (bad gateway) or 504 (timeout).
  virtual void fail(int status, const char* why) = 0;
  // Backpressure on the request body (the upstream is slow to take it).
  virtual void pauseBody() = 0;
  virtual void resumeBody() = 0;
  // The call is over: it must not be called again.
  virtual void detach() = 0;
  // A chunked response's trailer section, its field lines as received
  // (checked by the parser), just before end().
  virtual void trailers(std::string_view lines) { (void)lines; }
  // The request's trailer fields, the same way, sent after a chunked request
  // body.
  virtual std::string requestTrailers() const { return {}; }
};

// A client's exchange as the downstream: the upstream's head is passed on
// without its hop-by-hop fields; errors are kuai's 502/504 pages.
std::shared_ptr<Downstream> exchangeDownstream(std::shared_ptr<Exchange> ex);

// What a request looks like upstream, for calls that do not come from a
// client connection (kuai's JS client).
struct OutboundRequest {
  std::string head;        // request line and fields, blank line included
  bool idempotent = true;
  bool hasBody = false;
  bool chunked = false;    // the body is sent with chunked framing
  bool isHead = false;
  bool upgrade = false;
};

class UpstreamConn;

class ProxyCall final : public ExchangeListener {
 public:
  enum class Phase : uint8_t { kConnecting, kWaiting, kStreaming, kTunnel, kDone };

  ProxyCall(std::shared_ptr<UpstreamPool> pool, std::shared_ptr<Downstream> down)
      : pool_(std::move(pool)), ex_(std::move(down)) {}

  // A client's request, its head rewritten for the upstream. With `strip`,
  // `prefix` is taken off the front of the target (a route's mount point).
  void start(const parser::Request& req, const Exchange& ex, bool strip, std::string_view prefix);
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

  // The call is over (UpstreamPool::callDone): its downstream hears no more.
  void detachDownstream() {
    if (ex_) ex_->detach();
  }

 private:
  void attempt(OutputQueue* queued = nullptr, int noneLeft = 502);
  // Error answer (or abort when the head is out) and done; `why` says what
  // happened, with the errno name where there is one ("connect: ECONNREFUSED").
  void giveUp(int status, std::string why);
  void endTunnel();
  void finish(bool reusable);
  void dropConn(bool failure);
  uint64_t now() const { return pool_->reactor().nowMs(); }

  std::shared_ptr<UpstreamPool> pool_;
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
};


}  // namespace kuai::server
