// ProxyRoute: the handler of one proxy route of a site on one reactor. It owns
// the route's UpstreamPool (connections, balancer, health) and starts one
// ProxyCall per request, which answers through the request's Exchange. A
// reload builds a new route (and pool); calls in flight keep the old pool
// until they end. On the reactor's thread.
#pragma once

#include <memory>
#include <string>

#include "server/exchange.h"
#include "server/site.h"
#include "server/upstream_pool.h"

namespace kuai::server {

class ProxyRoute final : public Handler {
 public:
  // `site` keeps `route` alive as long as this route lives.
  ProxyRoute(Reactor& reactor, std::shared_ptr<const Site> site, const RouteSpec& route);

  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  UpstreamPool& pool() { return *pool_; }

 private:
  std::shared_ptr<const Site> site_;
  bool strip_ = false;  // take the route's mount point off the target
  std::string prefix_;
  std::shared_ptr<UpstreamPool> pool_;
};

}  // namespace kuai::server
