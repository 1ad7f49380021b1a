#include "server/thread_context.h"

#include "server/agent.h"
#include "server/router.h"

namespace kuai::server {

ThreadContext::ThreadContext(Reactor& reactor, std::shared_ptr<const Site> site)
    : reactor_(reactor), stats_(registerReactorStats()) {
  router_ = std::make_unique<Router>(std::move(site), *this);
}

ThreadContext::~ThreadContext() { shutdown(); }

void ThreadContext::setSite(std::shared_ptr<const Site> site, std::shared_ptr<AccessLog> log) {
  flushLog();
  setObservers(!site->logging.metricsPath.empty(), std::move(log));
  router_->setSite(std::move(site));
}

void ThreadContext::setObservers(bool metrics, std::shared_ptr<AccessLog> log) {
  accessLog_ = std::move(log);
  observing_ = metrics || accessLog_;
}

void ThreadContext::flushLog() {
  if (accessLog_ && !logBuf_.empty()) accessLog_->submit(logBuf_);
}

void ThreadContext::setAppHandler(const std::string& app, Handler* handler) {
  for (auto& [path, h] : appHandlers_) {
    if (path == app) {
      h = handler;
      return;
    }
  }
  appHandlers_.emplace_back(app, handler);
}

Handler* ThreadContext::appHandler(const std::string& app) const {
  for (const auto& [path, h] : appHandlers_) {
    if (path == app) return h;
  }
  return nullptr;
}

Agent& ThreadContext::agent() {
  if (!agent_) agent_ = std::make_unique<Agent>(reactor_);
  return *agent_;
}

void ThreadContext::shutdown() {
  router_.reset();
  agent_.reset();
  flushLog();
  accessLog_.reset();
  observing_ = false;
}

}  // namespace kuai::server
