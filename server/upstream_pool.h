// UpstreamPool: the upstream servers of one proxy spec on one reactor, and
// everything kept about them there: keep-alive connections (an "agent" per
// core: nothing shared, no locks), the balancer (round-robin, least
// connections, smooth weighted round-robin), passive health (down after
// maxFails failures in a row, for failTimeout) and active health checks, the
// proxied calls in flight and their deadlines. A proxy route owns one
// (ProxyRoute); so does the JS client's Agent for each origin. Calls hold
// their pool (shared), so it outlives a reload while they finish.
// Everything here runs on the reactor's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/metrics.h"
#include "server/reactor.h"
#include "server/site.h"

namespace kuai::server {

class Downstream;
class HealthProbe;
class ProxyCall;
class UpstreamConn;

class UpstreamPool final : public Reactor::Ticker, public std::enable_shared_from_this<UpstreamPool> {
 public:
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

  // `label` names its upstreams in the metrics (a route's match, or
  // "agent:HOST:PORT" for the JS client's).
  static std::shared_ptr<UpstreamPool> create(Reactor& reactor, std::shared_ptr<const ProxySpec> spec,
                                              std::string label);
  UpstreamPool(Reactor& reactor, std::shared_ptr<const ProxySpec> spec, std::string label);
  ~UpstreamPool() override;

  Reactor& reactor() { return reactor_; }
  const ProxySpec& spec() const { return *spec_; }

  // A new call on this pool, answering `down`; the pool watches its deadlines
  // until it is done (callDone).
  ProxyCall* newCall(std::shared_ptr<Downstream> down);
  void callDone(ProxyCall* call);

  // Balancer: an upstream not in `tried` (bitmask by index); null when none
  // is left.
  Upstream* pick(uint64_t tried);
  size_t indexOf(const Upstream* u) const { return size_t(u - upstreams_.data()); }
  // A connection to `u`: a pooled one, or a new one being connected; null
  // with `err` (an errno) when no socket can be made.
  UpstreamConn* acquire(Upstream* u, int& err);
  // The call is done with it: back to the pool, or closed.
  void release(UpstreamConn* c, bool reusable);
  void dropIdle(UpstreamConn* c);  // an idle one was closed by its peer
  // Passive health.
  void failed(Upstream* u);
  void succeeded(Upstream* u);
  // An active check finished.
  void probeDone(Upstream* u, bool healthy);
  // Deadlines of calls, idle timeouts, down marks ending, checks due.
  void onTick(uint64_t nowMs) override;

 private:
  Reactor& reactor_;
  std::shared_ptr<const ProxySpec> spec_;
  std::vector<Upstream> upstreams_;
  size_t rr_ = 0;
  std::vector<ProxyCall*> calls_;  // in flight, for their deadlines
};

}  // namespace kuai::server
