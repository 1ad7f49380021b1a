#include "server/testing/test_site.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace kuai::server::testing {

std::shared_ptr<Site> routeKindsSite(const std::string& root, const std::string& staticMount) {
  auto site = std::make_shared<Site>();
  RouteSpec fixed;
  fixed.path = "/fixed";
  fixed.exact = true;
  fixed.kind = RouteSpec::Kind::kFixed;
  fixed.body = kFixedBody;
  site->routes.push_back(fixed);

  RouteSpec app;
  app.path = "/app/";
  app.kind = RouteSpec::Kind::kApp;
  app.app = kTestApp;
  site->routes.push_back(app);

  auto spec = std::make_shared<ProxySpec>();
  UpstreamSpec up;
  up.name = "127.0.0.1:9";
  auto* sin = reinterpret_cast<sockaddr_in*>(&up.addr);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(9);
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  up.addrLen = sizeof(sockaddr_in);
  spec->upstreams.push_back(up);
  RouteSpec proxy;
  proxy.path = "/proxy/";
  proxy.kind = RouteSpec::Kind::kProxy;
  proxy.proxy = spec;
  site->routes.push_back(proxy);

  RouteSpec files;
  files.path = staticMount;
  files.kind = RouteSpec::Kind::kStatic;
  files.statics.root = root;
  site->routes.push_back(files);
  return site;
}

}  // namespace kuai::server::testing
