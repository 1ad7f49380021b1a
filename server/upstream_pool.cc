#include "server/upstream_pool.h"

#include <cstdio>

#include "server/health_check.h"
#include "server/log.h"
#include "server/proxy_call.h"
#include "server/upstream_conn.h"

namespace kuai::server {

std::shared_ptr<UpstreamPool> UpstreamPool::create(Reactor& reactor, std::shared_ptr<const ProxySpec> spec,
                                                   std::string label) {
  return std::make_shared<UpstreamPool>(reactor, std::move(spec), std::move(label));
}

UpstreamPool::UpstreamPool(Reactor& reactor, std::shared_ptr<const ProxySpec> spec, std::string label)
    : reactor_(reactor), spec_(std::move(spec)) {
  upstreams_.resize(spec_->upstreams.size());
  for (size_t i = 0; i < upstreams_.size(); ++i) {
    upstreams_[i].spec = &spec_->upstreams[i];
    upstreams_[i].counters = registerUpstream(label, spec_->upstreams[i].name);
  }
  reactor_.addTicker(this);
}

UpstreamPool::~UpstreamPool() {
  reactor_.removeTicker(this);
  for (Upstream& u : upstreams_) {
    delete u.probe;  // closes its connection
    u.probe = nullptr;
  }
  for (Upstream& u : upstreams_) {
    for (UpstreamConn* c : u.idle) {
      c->sock->close();
      delete c;
    }
    u.idle.clear();
    unregisterUpstream(u.counters);
  }
}

ProxyCall* UpstreamPool::newCall(std::shared_ptr<Downstream> down) {
  auto* call = new ProxyCall(shared_from_this(), std::move(down));
  calls_.push_back(call);
  return call;
}

UpstreamPool::Upstream* UpstreamPool::pick(uint64_t tried) {
  const uint64_t now = reactor_.nowMs();
  size_t n = upstreams_.size();
  auto usable = [&](size_t i) {
    const Upstream& u = upstreams_[i];
    return !(tried & (uint64_t(1) << (i & 63))) && u.downUntil <= now && !u.probeFailed;
  };
  Upstream* best = nullptr;
  switch (spec_->balance) {
    case Balance::kRoundRobin:
      for (size_t k = 0; k < n; ++k) {
        size_t i = (rr_ + k) % n;
        if (usable(i)) {
          rr_ = i + 1;
          best = &upstreams_[i];
          break;
        }
      }
      break;
    case Balance::kLeastConn: {
      // Fewest active connections per unit of weight; ties go round the ring.
      for (size_t k = 0; k < n; ++k) {
        size_t i = (rr_ + k) % n;
        if (!usable(i)) continue;
        Upstream& u = upstreams_[i];
        if (!best || uint64_t(u.active) * best->spec->weight <
                         uint64_t(best->active) * u.spec->weight) {
          best = &u;
        }
      }
      if (best) rr_ = indexOf(best) + 1;
      break;
    }
    case Balance::kWeighted: {
      // Smooth weighted round-robin: each pick raises every candidate by its
      // weight and lowers the chosen one by the total.
      int64_t total = 0;
      for (size_t i = 0; i < n; ++i) {
        if (!usable(i)) continue;
        Upstream& u = upstreams_[i];
        u.currentWeight += u.spec->weight;
        total += u.spec->weight;
        if (!best || u.currentWeight > best->currentWeight) best = &u;
      }
      if (best) best->currentWeight -= total;
      break;
    }
  }
  if (best || tried != 0) return best;
  // Every upstream is marked down: try the one whose mark ends first rather
  // than refuse outright (a single upstream would otherwise stay dark).
  for (Upstream& u : upstreams_) {
    if (!best || u.downUntil < best->downUntil) best = &u;
  }
  return best;
}

UpstreamConn* UpstreamPool::acquire(Upstream* u, int& err) {
  if (!u->idle.empty()) {
    UpstreamConn* c = u->idle.back();
    u->idle.pop_back();
    ++u->active;
    u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
    u->counters->active.store(u->active, std::memory_order_relaxed);
    u->counters->requests.fetch_add(1, std::memory_order_relaxed);
    return c;
  }
  auto* c = new UpstreamConn(*this, *u, reactor_.config().limits);
  c->sock = reactor_.connect(reinterpret_cast<const sockaddr*>(&u->spec->addr), u->spec->addrLen, c, err);
  if (!c->sock) {
    delete c;
    return nullptr;
  }
  ++u->open;
  ++u->active;
  u->counters->connects.fetch_add(1, std::memory_order_relaxed);
  u->counters->active.store(u->active, std::memory_order_relaxed);
  u->counters->requests.fetch_add(1, std::memory_order_relaxed);
  return c;
}

void UpstreamPool::release(UpstreamConn* c, bool reusable) {
  Upstream* u = c->up;
  c->call = nullptr;
  --u->active;
  u->counters->active.store(u->active, std::memory_order_relaxed);
  if (reusable && !c->sock->readPaused() && u->idle.size() < spec_->maxIdle && !reactor_.draining()) {
    ++c->requests;
    c->idleSince = reactor_.nowMs();
    u->idle.push_back(c);
    u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
    return;
  }
  --u->open;
  c->sock->close();
  c->sock = nullptr;
  reactor_.later([](void* p) { delete static_cast<UpstreamConn*>(p); }, c);
}

void UpstreamPool::dropIdle(UpstreamConn* c) {
  Upstream* u = c->up;
  std::erase(u->idle, c);
  u->counters->idle.store(int64_t(u->idle.size()), std::memory_order_relaxed);
  --u->open;
  c->sock->close();
  c->sock = nullptr;
  reactor_.later([](void* p) { delete static_cast<UpstreamConn*>(p); }, c);
}

void UpstreamPool::failed(Upstream* u) {
  u->counters->failures.fetch_add(1, std::memory_order_relaxed);
  if (++u->fails >= spec_->maxFails && spec_->maxFails > 0) {
    u->downUntil = reactor_.nowMs() + spec_->failTimeoutMs;
    u->fails = 0;
    u->counters->down.store(1, std::memory_order_relaxed);
  }
}

void UpstreamPool::succeeded(Upstream* u) {
  u->fails = 0;
  if (u->downUntil) {
    u->downUntil = 0;
    u->counters->down.store(u->probeFailed ? 1 : 0, std::memory_order_relaxed);
  }
}

void UpstreamPool::callDone(ProxyCall* call) {
  std::erase(calls_, call);
  call->detachDownstream();
  reactor_.later([](void* p) { delete static_cast<ProxyCall*>(p); }, call);
}

void UpstreamPool::probeDone(Upstream* u, bool healthy) {
  if (u->probe) {
    reactor_.later([](void* p) { delete static_cast<HealthProbe*>(p); }, u->probe);
    u->probe = nullptr;
  }
  u->nextProbeMs = reactor_.nowMs() + spec_->health.intervalMs;
  if (u->probeFailed != !healthy) {
    logLine(healthy ? LogLevel::kNotice : LogLevel::kWarning, "kuai: upstream %s is %s (health check %s)\n",
            u->spec->name.c_str(), healthy ? "up" : "down", spec_->health.path.c_str());
  }
  u->probeFailed = !healthy;
  u->counters->down.store(!healthy || u->downUntil > reactor_.nowMs() ? 1 : 0,
                          std::memory_order_relaxed);
}

void UpstreamPool::onTick(uint64_t now) {
  // Deadlines of requests in flight (a call may finish, and leave, here).
  std::vector<ProxyCall*> calls = calls_;
  for (ProxyCall* c : calls) c->onTick(now);
  // Idle connections past their time (oldest first in each pool).
  for (Upstream& u : upstreams_) {
    while (!u.idle.empty() && now - u.idle.front()->idleSince >= spec_->idleTimeoutMs) {
      dropIdle(u.idle.front());
    }
    if (u.downUntil && u.downUntil <= now) {
      u.downUntil = 0;
      u.counters->down.store(u.probeFailed ? 1 : 0, std::memory_order_relaxed);
    }
    if (!spec_->health.enabled || reactor_.draining()) continue;
    if (u.probe) {
      u.probe->check(now);
    } else if (now >= u.nextProbeMs) {
      u.probe = new HealthProbe(*this, u, reactor_.config().limits);
      if (!u.probe->start(now)) probeDone(&u, false);
    }
  }
}

}  // namespace kuai::server
