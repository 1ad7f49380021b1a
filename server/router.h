// Router: picks the handler for a request. One per reactor (its static-file
// caches and upstream pools are that thread's own).
//  - Without a config file: fixed responses (--respond), then static files
//    (kuai serve DIR).
//  - With one (kuai --config): the site's routes, first match wins; static
//    routes are answered here synchronously, proxy routes through their
//    AsyncHandler (asyncHandler()).
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
  Router(const ServerConfig& config, Reactor& reactor);
  ~Router();

  // The asynchronous handler for this request (a proxy route), or null: then
  // handle() answers it once its body has arrived.
  AsyncHandler* asyncHandler(const parser::Request& req);
  void handle(const parser::Request& req, Connection& conn);
  void setSite(std::shared_ptr<const Site> site);

 private:
  struct Fixed {
    std::string path;
    std::string headers;  // preformatted header lines
    std::string body;
  };
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

  const ServerConfig& config_;
  Reactor& reactor_;
  std::vector<Fixed> fixed_;
  std::unique_ptr<StaticFiles> static_;  // kuai serve DIR
  std::unique_ptr<Table> table_;         // kuai --config
  StaticResponse scratch_;  // reused for every static response
};

}  // namespace kuai::server
