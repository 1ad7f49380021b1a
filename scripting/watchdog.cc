#include "scripting/watchdog.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "scripting/environment.h"

namespace kuai::scripting {

namespace {

std::mutex gWatchMutex;
std::set<Environment*> gWatched;
std::atomic<uint64_t> gCpuBudgetMs{5000};
std::once_flag gWatchOnce;

void watchdog() {
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    uint64_t now = monotonicMs();
    std::lock_guard<std::mutex> lock(gWatchMutex);
    for (Environment* e : gWatched) {
      uint64_t since = e->jsSince.load(std::memory_order_relaxed);
      if (since == 0 || e->terminated.load() || now - since < gCpuBudgetMs.load()) continue;
      e->terminatedWhy = "JavaScript ran for more than its CPU budget (" + std::to_string(gCpuBudgetMs.load()) + " ms)";
      e->terminated.store(true);
      e->isolate()->TerminateExecution();
    }
  }
}

}  // namespace

void setCpuBudget(uint64_t ms) { gCpuBudgetMs.store(ms); }

void registerWatch(Environment* e) {
  std::call_once(gWatchOnce, [] { std::thread(watchdog).detach(); });
  std::lock_guard<std::mutex> lock(gWatchMutex);
  gWatched.insert(e);
}

void unregisterWatch(Environment* e) {
  std::lock_guard<std::mutex> lock(gWatchMutex);
  gWatched.erase(e);
}

}  // namespace kuai::scripting
