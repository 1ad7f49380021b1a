// ThreadContext: the services one reactor thread offers its protocols and
// handlers, apart from the I/O itself (which is the Reactor's): the router
// with the site's routes, request accounting (stats for the metrics endpoint,
// the access log's buffer), the registry of app handlers (the scripts serving
// a config file's `app` routes), the JS client's upstream pools (Agent; a
// proxy route's pool belongs to its route), and scratch buffers.
// One per reactor, owned by it; on its thread only (setObservers also before
// the thread starts).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/exchange.h"
#include "server/metrics.h"
#include "server/site.h"

namespace kuai::server {

class Agent;
class Reactor;
class Router;

class ThreadContext {
 public:
  ThreadContext(Reactor& reactor, std::shared_ptr<const Site> site);
  ~ThreadContext();
  ThreadContext(const ThreadContext&) = delete;
  ThreadContext& operator=(const ThreadContext&) = delete;

  Reactor& reactor() { return reactor_; }
  Router& router() { return *router_; }
  // A reload: requests from now on are routed by `site`; `log` is the access
  // log from now on (null: none).
  void setSite(std::shared_ptr<const Site> site, std::shared_ptr<AccessLog> log);

  // Request accounting: count requests for the metrics endpoint and write the
  // access log (null: none). Protocols account only while observing().
  void setObservers(bool metrics, std::shared_ptr<AccessLog> log);
  bool observing() const { return observing_; }
  bool logging() const { return accessLog_ != nullptr; }
  ReactorStats& stats() { return *stats_; }
  std::string& logBuffer() { return logBuf_; }
  // Hands the buffered access-log lines to the writer.
  void flushLog();

  // The handler of a config file's `app` route (the script at `app`, loaded
  // in this thread's Node environment); null removes it.
  void setAppHandler(const std::string& app, Handler* handler);
  Handler* appHandler(const std::string& app) const;

  // The JS client's keep-alive pools, one per origin (created on first use).
  Agent& agent();

  // Scratch buffers (TLS plaintext, file chunks to encrypt).
  std::string& plainScratch() { return plainScratch_; }
  std::string& fileScratch() { return fileScratch_; }

  // The reactor is going away: routes and pools go (closing their
  // connections) and the log is flushed.
  void shutdown();

 private:
  Reactor& reactor_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Agent> agent_;
  std::shared_ptr<ReactorStats> stats_;
  std::shared_ptr<AccessLog> accessLog_;
  std::string logBuf_;
  bool observing_ = false;
  std::vector<std::pair<std::string, Handler*>> appHandlers_;
  std::string plainScratch_;
  std::string fileScratch_;
};

}  // namespace kuai::server
