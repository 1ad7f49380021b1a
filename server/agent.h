// Agent: the per-reactor keep-alive client for outbound requests that do not
// come from a proxy route (kuai's JS http client and fetch). One UpstreamPool
// per origin (address:port), created on first use, so scripts get the same
// pools, retries and metrics as config-file proxies: the Node http.Agent idea,
// done natively and per core. Owned by the thread's ThreadContext.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "server/proxy_call.h"
#include "server/upstream_pool.h"

namespace kuai::server {

struct AgentOptions {
  uint32_t maxIdle = 32;
  uint32_t idleTimeoutMs = 4'000;
  uint32_t connectTimeoutMs = 10'000;
  uint32_t readTimeoutMs = 300'000;  // no response byte for this long -> error
  uint32_t retries = 1;
};

class Agent {
 public:
  explicit Agent(Reactor& reactor, AgentOptions options = {});
  ~Agent();

  // Starts a request to `address` (an IPv4 or IPv6 literal: names are resolved
  // by the caller, asynchronously) and `port`. Null with `err` when the address
  // is not a literal. The call then talks to `down` until down->detach(); the
  // returned listener takes the request body (onBody, onBodyEnd), a cancel
  // (onAbort) and onDrain when `down` can take more of the response.
  ExchangeListener* request(const std::string& address, int port, std::shared_ptr<Downstream> down,
                     OutboundRequest req, std::string& err);

 private:
  Reactor& reactor_;
  AgentOptions options_;
  std::map<std::string, std::shared_ptr<UpstreamPool>> origins_;
};

}  // namespace kuai::server
