// Router: picks the one handler that answers a request, from the site's routes
// (first match wins), once, when the request's head is parsed. Every route kind
// is a Handler: static files, fixed answers (--respond), the metrics page,
// proxies, and app routes (the script's server on this thread, or a 503 while
// it is not loaded); no match is the 404 handler.
// One per reactor, in its ThreadContext, on its thread: the route table's
// static-file caches and upstream pools are that thread's own. A reload
// (SIGHUP) swaps in a new table between requests; a request in flight keeps
// the table it was routed by (route()'s `keep`) and so its handler.
#pragma once

#include <memory>
#include <vector>

#include "parser/request_parser.h"
#include "server/exchange.h"
#include "server/handlers.h"
#include "server/site.h"

namespace kuai::server {

class ThreadContext;

class Router {
 public:
  Router(std::shared_ptr<const Site> site, ThreadContext& context);
  ~Router();

  // The handler for `req`. `keep` is set to what keeps it alive (the route
  // table) for as long as the caller holds it.
  Handler* route(const parser::Request& req, std::shared_ptr<const void>& keep);
  void setSite(std::shared_ptr<const Site> site);

 private:
  struct Route {
    const RouteSpec* spec = nullptr;
    std::shared_ptr<Handler> handler;  // null for app routes (looked up per request)
  };
  struct Table {
    std::shared_ptr<const Site> site;
    std::vector<Route> routes;
    std::unique_ptr<MetricsHandler> metrics;  // when the site has a metrics path
  };

  const Route* match(const parser::Request& req, std::string_view path) const;

  ThreadContext& context_;
  std::shared_ptr<const Table> table_;
  ErrorHandler notFound_{404};
  ErrorHandler unavailable_{503};
};

}  // namespace kuai::server
