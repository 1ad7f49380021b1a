// Agent: the per-reactor keep-alive client for outbound requests that do not
// come from a proxy route (kuai's JS http client and fetch). One ProxyRoute per
// origin (address:port), created on first use, so scripts get the same pools,
// health tracking and retries as config-file proxies: the Node http.Agent idea,
// done natively and per core.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "server/proxy.h"

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
  struct Origin {
    std::shared_ptr<Site> site;  // holds the route spec the ProxyRoute refers to
    std::shared_ptr<ProxyRoute> route;
  };
  std::map<std::string, Origin> origins_;
};

}  // namespace kuai::server
