// The watchdog: one thread for the process that looks at every environment's
// current call into JS a few times a second, and stops (TerminateExecution) a
// call that has run past the CPU budget (--cpu-budget); the environment is
// then replaced on its own thread. Thread-safe.
#pragma once

#include <time.h>

#include <cstdint>

namespace kuai::scripting {

class Environment;

// The clock Environment::jsSince is read against.
inline uint64_t monotonicMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

void setCpuBudget(uint64_t ms);
// From the environment's own thread, after it starts / before it goes.
void registerWatch(Environment* e);
void unregisterWatch(Environment* e);

}  // namespace kuai::scripting
