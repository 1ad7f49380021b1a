// Router: picks the handler for a request from the site's routes (first match
// wins). One per reactor (its static-file caches and upstream pools are that
// thread's own). Static and fixed routes are answered here synchronously,
// proxy and app routes through their AsyncHandler (asyncHandler()).
// A reload (SIGHUP) swaps in a new route table between requests; requests in
// flight keep the handlers they started with.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parser/request_parser.h"
#include "server/config.h"
#include "server/hooks.h"
#include "server/static_files.h"

namespace kuai::server {

class Connection;
class Reactor;
class ProxyRoute;

class Router {
 public:
  Router(std::shared_ptr<const Site> site, Reactor& reactor);
  ~Router();

  // The asynchronous handler for this request (a proxy route), or null: then
  // handle() answers it once its body has arrived.
  AsyncHandler* asyncHandler(const parser::Request& req);
  void handle(const parser::Request& req, Connection& conn);
  void setSite(std::shared_ptr<const Site> site);

 private:
  struct Route {
    const RouteSpec* spec = nullptr;
    std::unique_ptr<StaticFiles> statics;
    std::shared_ptr<ProxyRoute> proxy;
  };
  struct Table {
    std::shared_ptr<const Site> site;
    std::vector<Route> routes;
  };

  const Route* match(const parser::Request& req) const;
  void serveStatic(StaticFiles& files, const parser::Request& req, Connection& conn,
                   std::string_view strip);

  Reactor& reactor_;
  std::unique_ptr<Table> table_;
  StaticResponse scratch_;  // reused for every static response
};

}  // namespace kuai::server
