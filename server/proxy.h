// ProxyRoute: one proxy route of a config file on one reactor. It forwards
// requests to the route's upstreams over a keep-alive pool of its own (an
// "agent" per core: nothing shared, no locks), balances between them, tracks
// their health, retries what may be retried, and streams bodies both ways
// with backpressure. Everything here runs on the reactor's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parser/response_parser.h"
#include "server/exchange.h"
#include "server/reactor.h"
#include "server/site.h"

namespace kuai::server {

class UpstreamConn;
class ProxyCall;
class HealthProbe;

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
};

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

// Counters of one upstream on one reactor, read by the metrics endpoint from
// another thread (relaxed atomics; written only by the owning reactor).
struct UpstreamCounters {
  std::atomic<int64_t> idle{0};      // pooled keep-alive connections
  std::atomic<int64_t> active{0};    // connections carrying a request
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> failures{0};  // connect errors, resets, timeouts, bad responses
  std::atomic<uint64_t> requests{0};
  std::atomic<int64_t> down{0};      // 1 while marked down
};

class ProxyRoute final : public Handler,
                         public Reactor::Ticker,
                         public std::enable_shared_from_this<ProxyRoute> {
 public:
  // `site` keeps `route` alive as long as requests use this route.
  static std::shared_ptr<ProxyRoute> create(Reactor& reactor, std::shared_ptr<const Site> site,
                                            const RouteSpec& route);
  ProxyRoute(Reactor& reactor, std::shared_ptr<const Site> site, const RouteSpec& route);
  ~ProxyRoute() override;

  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  void onTick(uint64_t nowMs) override;
  // Starts a request from elsewhere (the JS client). The returned call takes
  // the request body through its ExchangeListener side (onBody, onBodyEnd,
  // onAbort; onDrain when the downstream catches up) until down->detach().
  ExchangeListener* startCall(std::shared_ptr<Downstream> down, OutboundRequest req);

  struct Upstream {
    const UpstreamSpec* spec = nullptr;
    std::vector<UpstreamConn*> idle;  // most recently used last
    uint32_t active = 0;              // connections carrying a request
    uint32_t open = 0;                // all connections, idle ones included
    uint32_t fails = 0;               // consecutive failures
    uint64_t downUntil = 0;           // passive health: skipped until then
    bool probeFailed = false;         // active health: the last check failed
    int64_t currentWeight = 0;        // smooth weighted round-robin
    std::shared_ptr<UpstreamCounters> counters;
    HealthProbe* probe = nullptr;
    uint64_t nextProbeMs = 0;
  };

  // For ProxyCall / UpstreamConn.
  Reactor& reactor() { return reactor_; }
  const ProxySpec& spec() const { return *spec_; }
  const RouteSpec& route() const { return route_; }
  // Picks an upstream not in `tried` (bitmask by index); null when none is left.
  Upstream* pick(uint64_t tried);
  size_t indexOf(const Upstream* u) const { return size_t(u - upstreams_.data()); }
  // A connection for `u`: a pooled one, or a new one being connected.
  UpstreamConn* acquire(Upstream* u, int& err);
  // The request is done with it: back to the pool, or closed.
  void release(UpstreamConn* c, bool reusable);
  void dropIdle(UpstreamConn* c);  // an idle one was closed by its peer
  void failed(Upstream* u);        // passive health
  void succeeded(Upstream* u);
  void callDone(ProxyCall* call);
  void probeDone(Upstream* u, bool healthy);

 private:
  Reactor& reactor_;
  std::shared_ptr<const Site> site_;
  const RouteSpec& route_;
  std::shared_ptr<const ProxySpec> spec_;
  std::vector<Upstream> upstreams_;
  size_t rr_ = 0;
  std::vector<ProxyCall*> calls_;  // in flight, for their deadlines
};

// The metrics endpoint's view of every upstream on every reactor.
struct UpstreamMetric {
  std::string route;  // the route's match
  std::string upstream;
  std::shared_ptr<UpstreamCounters> counters;
};
std::vector<UpstreamMetric> upstreamMetrics();

}  // namespace kuai::server
