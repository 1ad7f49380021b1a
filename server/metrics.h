// Metrics and the access log.
//
// Each reactor counts into its own ReactorStats (relaxed atomics written by that
// thread only); the metrics endpoint sums them when asked, in Prometheus text
// format. Access-log lines are formatted on the reactor into its own buffer and
// handed, a batch at a time, to one writer thread: the reactor never waits on
// the disk.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace kuai::server {

// Upper bounds of the latency histogram, in microseconds.
inline constexpr uint64_t kLatencyBoundsUs[] = {500,     1'000,   2'500,     5'000,    10'000,
                                                25'000,  50'000,  100'000,   250'000,  500'000,
                                                1'000'000, 2'500'000, 5'000'000, 10'000'000};
inline constexpr size_t kLatencyBuckets = sizeof(kLatencyBoundsUs) / sizeof(kLatencyBoundsUs[0]);

// The clock request latencies are measured with, in microseconds.
inline uint64_t monotonicMicros() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000 + uint64_t(ts.tv_nsec) / 1000;
}

struct alignas(64) ReactorStats {
  enum Protocol { kHttp1, kHttp2, kProtocols };
  std::atomic<uint64_t> byStatus[600] = {};
  std::atomic<uint64_t> byProtocol[kProtocols] = {};
  std::atomic<uint64_t> latency[kLatencyBuckets + 1] = {};  // last: +Inf
  std::atomic<uint64_t> latencySumUs{0};
  std::atomic<int64_t> openConnections{0};

  void record(int status, uint64_t micros, Protocol protocol) {
    if (status >= 100 && status < 600) byStatus[status].fetch_add(1, std::memory_order_relaxed);
    byProtocol[protocol].fetch_add(1, std::memory_order_relaxed);
    size_t b = 0;
    while (b < kLatencyBuckets && micros > kLatencyBoundsUs[b]) ++b;
    latency[b].fetch_add(1, std::memory_order_relaxed);
    latencySumUs.fetch_add(micros, std::memory_order_relaxed);
  }
};

// Counters of one upstream on one reactor (its UpstreamPool), read by the
// metrics endpoint from another thread (relaxed atomics; written only by the
// owning reactor).
struct UpstreamCounters {
  std::atomic<int64_t> idle{0};      // pooled keep-alive connections
  std::atomic<int64_t> active{0};    // connections carrying a request
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> failures{0};  // connect errors, resets, timeouts, bad responses
  std::atomic<uint64_t> requests{0};
  std::atomic<int64_t> down{0};      // 1 while marked down
};

// An upstream's counters, shown by the endpoint as {route, upstream} (summed
// over reactors) until unregistered.
std::shared_ptr<UpstreamCounters> registerUpstream(const std::string& route, const std::string& upstream);
void unregisterUpstream(const std::shared_ptr<UpstreamCounters>& counters);

// A reactor's stats, registered for the endpoint while the reactor lives.
std::shared_ptr<ReactorStats> registerReactorStats();
// The whole process's metrics, Prometheus text exposition format.
std::string renderMetrics();

// The access log file shared by all reactors ("-": stdout). Opened once at
// start-up (and again on reload); lines are written by a background thread.
class AccessLog {
 public:
  // null with `err` when the file cannot be opened for appending.
  static std::shared_ptr<AccessLog> open(const std::string& path, std::string& err);
  ~AccessLog();
  // Hands over a batch of complete lines (the caller's buffer is emptied).
  void submit(std::string& lines);

 private:
  AccessLog() = default;
  struct State;
  std::unique_ptr<State> state_;
};

// Appends one line in the combined format:
// addr - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 1234 "referer" "agent"
void formatCombined(std::string& out, std::string_view addr, time_t when,
                    std::string_view requestLine, int status, uint64_t bytes,
                    std::string_view referer, std::string_view agent);

}  // namespace kuai::server
