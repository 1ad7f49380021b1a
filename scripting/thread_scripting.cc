#include "scripting/thread_scripting.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "scripting/js_server.h"
#include "scripting/watchdog.h"
#include "server/agent.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/reactor.h"

namespace kuai::scripting {

namespace {

// The first environment runs the main script before the others start, so that a
// script that cannot start (syntax error, missing module) is reported once.
std::mutex gStartMutex;
std::condition_variable gStartCv;
int gFirstStart = 0;  // 0: pending, 1: succeeded, -1: failed

std::mutex gThreadsMutex;
std::vector<ThreadScripting*> gThreads;  // by reactor index

}  // namespace

ThreadScripting::ThreadScripting(server::Reactor& reactor, const ScriptOptions& options)
    : reactor_(reactor), options_(options) {}

ThreadScripting::~ThreadScripting() {
  {
    std::lock_guard<std::mutex> lock(gThreadsMutex);
    if (size_t(reactor_.index()) < gThreads.size() && gThreads[size_t(reactor_.index())] == this) {
      gThreads[size_t(reactor_.index())] = nullptr;
    }
  }
  env_.reset();
  slots_.clear();
}

bool ThreadScripting::start(std::string& err) {
  env_ = std::make_unique<Environment>(*this, reactor_, options_, /*firstStart=*/true);
  return env_->start(err);
}

void ThreadScripting::stopEnvironment() { stop_ = true; }

int ThreadScripting::timeoutMs() const {
  if (restart_ || stop_) return 0;
  int t = env_->timeoutMs();
  // While waiting for the open requests to end, look again now and then.
  if (replacing_ && (t < 0 || t > 50)) t = 50;
  return t;
}

void ThreadScripting::runBatch(void (*work)(void*), void* arg) {
  if (restart_ || !env_) {
    work(arg);
  } else {
    env_->runBatch(work, arg);
  }
}

// After a burst, a quiet second: V8 collects fully and gives back the pages
// the burst's garbage took (as under memory pressure). The thread holds its
// isolate for its whole life, so no scope is needed beyond a handle scope.
void ThreadScripting::onQuiet() {
  if (restart_ || replacing_ || !env_) return;
  v8::Isolate* iso = env_->isolate();
  if (!iso) return;
  v8::HandleScope hs(iso);
  iso->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
}

void ThreadScripting::runOnce() {
  if (stop_) {
    stop_ = false;
    env_->abandon();
    closeUnclaimedSlots();
  }
  if (!restart_) env_->runOnce();
  if (replacing_ && !restart_ &&
      (env_->openExchanges() == 0 || reactor_.nowMs() >= replaceDeadlineMs_)) {
    restart_ = true;
  }
  if (restart_) replace();
}

void ThreadScripting::requestRestart(std::string why) {
  if (restart_) return;
  restart_ = true;
  why_ = std::move(why);
}

void ThreadScripting::requestReload(std::string why, std::function<void()> done) {
  if (done) onReplaced_.push_back(std::move(done));
  if (restart_ || replacing_) return;
  replacing_ = true;
  why_ = std::move(why);
  replaceDeadlineMs_ = reactor_.nowMs() + kGracefulDeadlineMs;
  env_->releaseSlots();  // new requests wait for the next environment
}

void ThreadScripting::replace() {
  server::logLine(server::LogLevel::kWarning, "kuai: thread %d: %s; starting a fresh JavaScript environment\n", reactor_.index(),
               why_.c_str());
  env_->abandon();
  env_.reset();
  restart_ = false;
  replacing_ = false;
  why_.clear();
  std::string err;
  env_ = std::make_unique<Environment>(*this, reactor_, options_, /*firstStart=*/false);
  if (!env_->start(err)) {
    server::logLine(server::LogLevel::kError, "kuai: thread %d: the script did not start again%s%s\n", reactor_.index(),
                 err.empty() ? "" : ": ", err.c_str());
    env_->abandon();
  }
  closeUnclaimedSlots();
  std::vector<std::function<void()>> done;
  done.swap(onReplaced_);
  for (auto& fn : done) fn();
}

void ThreadScripting::closeUnclaimedSlots() {
  for (auto& [key, slot] : slots_) {
    if (slot->claimed()) continue;
    // With --watch the next edit may bring the server back: keep its port.
    if (options_.watch) {
      slot->refuse();
    } else {
      slot->close();
    }
  }
}

JsServer* ThreadScripting::addServer(std::unique_ptr<JsServer> s) {
  servers_.push_back(std::move(s));
  return servers_.back().get();
}

ServerSlot* ThreadScripting::slot(const std::string& key) {
  auto& s = slots_[key];
  if (!s) s = std::make_unique<ServerSlot>(*this, key);
  return s.get();
}

server::Agent& ThreadScripting::agent() { return reactor_.context().agent(); }

std::unique_ptr<server::LoopDriver> startEnvironment(server::Reactor& reactor, const ScriptOptions& options,
                                                     std::string& err) {
  setCpuBudget(options.cpuBudgetMs);
  // The first thread runs the script alone; the others follow once it started.
  if (reactor.index() != 0) {
    std::unique_lock<std::mutex> lock(gStartMutex);
    gStartCv.wait(lock, [] { return gFirstStart != 0; });
    if (gFirstStart < 0) {
      err = "the script failed to start";
      return nullptr;
    }
  }
  auto ts = std::make_unique<ThreadScripting>(reactor, options);
  {
    std::lock_guard<std::mutex> lock(gThreadsMutex);
    if (gThreads.size() <= size_t(reactor.index())) gThreads.resize(size_t(reactor.index()) + 1, nullptr);
    gThreads[size_t(reactor.index())] = ts.get();
  }
  bool ok = ts->start(err);
  if (reactor.index() == 0) {
    std::lock_guard<std::mutex> lock(gStartMutex);
    gFirstStart = ok ? 1 : -1;
    gStartCv.notify_all();
  }
  if (!ok) {
    if (err.empty()) err = "the script failed to start";
    return nullptr;
  }
  return ts;
}

ThreadScripting* threadScripting(int index) {
  std::lock_guard<std::mutex> lock(gThreadsMutex);
  return size_t(index) < gThreads.size() ? gThreads[size_t(index)] : nullptr;
}

}  // namespace kuai::scripting
