#include "server/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace kuai::server {

Agent::Agent(Reactor& reactor, AgentOptions options) : reactor_(reactor), options_(options) {}

Agent::~Agent() = default;

ExchangeListener* Agent::request(const std::string& address, int port, std::shared_ptr<Downstream> down,
                          OutboundRequest req, std::string& err) {
  std::string key = address + "|" + std::to_string(port);
  auto it = origins_.find(key);
  if (it == origins_.end()) {
    UpstreamSpec up;
    if (port <= 0 || port > 65535) {
      err = "invalid port " + std::to_string(port);
      return nullptr;
    }
    if (address.find(':') != std::string::npos) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&up.addr);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(uint16_t(port));
      if (::inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) {
        err = "not an IP address: " + address;
        return nullptr;
      }
      up.addrLen = sizeof(sockaddr_in6);
      up.name = "[" + address + "]:" + std::to_string(port);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&up.addr);
      a->sin_family = AF_INET;
      a->sin_port = htons(uint16_t(port));
      if (::inet_pton(AF_INET, address.c_str(), &a->sin_addr) != 1) {
        err = "not an IP address: " + address;
        return nullptr;
      }
      up.addrLen = sizeof(sockaddr_in);
      up.name = address + ":" + std::to_string(port);
    }
    auto spec = std::make_shared<ProxySpec>();
    spec->upstreams.push_back(up);
    spec->maxIdle = options_.maxIdle;
    spec->idleTimeoutMs = options_.idleTimeoutMs;
    spec->connectTimeoutMs = options_.connectTimeoutMs;
    spec->readTimeoutMs = options_.readTimeoutMs;
    spec->sendTimeoutMs = options_.readTimeoutMs;
    spec->retries = options_.retries;
    spec->maxFails = 0;  // one origin: never marked down, every request tries it
    spec->maxRequestsPerConnection = 100000;
    std::string label = "agent:" + up.name;
    it = origins_.emplace(key, UpstreamPool::create(reactor_, std::move(spec), std::move(label))).first;
  }
  ProxyCall* call = it->second->newCall(std::move(down));
  call->startOutbound(std::move(req));
  return call;
}

}  // namespace kuai::server
