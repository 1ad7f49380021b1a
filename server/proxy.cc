#include "server/proxy.h"

#include "server/proxy_call.h"

namespace kuai::server {

ProxyRoute::ProxyRoute(Reactor& reactor, std::shared_ptr<const Site> site, const RouteSpec& route)
    : site_(std::move(site)), pool_(UpstreamPool::create(reactor, route.proxy, route.path)) {
  if (route.proxy->stripPrefix && !route.exact) {
    strip_ = true;
    prefix_ = route.path;
    if (prefix_.size() > 1 && prefix_.back() == '/') prefix_.pop_back();
  }
}

void ProxyRoute::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  ProxyCall* call = pool_->newCall(exchangeDownstream(ex));
  ex->setListener(call);
  call->start(req, *ex, strip_, prefix_);
}

}  // namespace kuai::server
