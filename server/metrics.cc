#include "server/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>


namespace kuai::server {

namespace {

std::mutex gStatsMutex;
std::vector<std::weak_ptr<ReactorStats>>& statsRegistry() {
  static std::vector<std::weak_ptr<ReactorStats>> all;
  return all;
}

struct UpstreamMetric {
  std::string route;  // the route's match
  std::string upstream;
  std::shared_ptr<UpstreamCounters> counters;
};
std::mutex gUpstreamMutex;
std::vector<UpstreamMetric>& upstreamRegistry() {
  static std::vector<UpstreamMetric> all;
  return all;
}
std::vector<UpstreamMetric> upstreamMetrics() {
  std::lock_guard<std::mutex> lock(gUpstreamMutex);
  return upstreamRegistry();
}

void appendU(std::string& out, uint64_t v) { out.append(std::to_string(v)); }

// Prometheus label values escape backslash, quote and newline.
void appendLabel(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
}

}  // namespace

std::shared_ptr<UpstreamCounters> registerUpstream(const std::string& route, const std::string& upstream) {
  auto counters = std::make_shared<UpstreamCounters>();
  std::lock_guard<std::mutex> lock(gUpstreamMutex);
  upstreamRegistry().push_back({route, upstream, counters});
  return counters;
}

void unregisterUpstream(const std::shared_ptr<UpstreamCounters>& counters) {
  std::lock_guard<std::mutex> lock(gUpstreamMutex);
  std::erase_if(upstreamRegistry(), [&](const UpstreamMetric& m) { return m.counters == counters; });
}

std::shared_ptr<ReactorStats> registerReactorStats() {
  auto s = std::make_shared<ReactorStats>();
  std::lock_guard<std::mutex> lock(gStatsMutex);
  auto& all = statsRegistry();
  std::erase_if(all, [](const std::weak_ptr<ReactorStats>& w) { return w.expired(); });
  all.push_back(s);
  return s;
}

std::string renderMetrics() {
  uint64_t byStatus[600] = {};
  uint64_t byProtocol[ReactorStats::kProtocols] = {};
  uint64_t latency[kLatencyBuckets + 1] = {};
  uint64_t sumUs = 0;
  int64_t open = 0;
  {
    std::lock_guard<std::mutex> lock(gStatsMutex);
    for (auto& w : statsRegistry()) {
      std::shared_ptr<ReactorStats> s = w.lock();
      if (!s) continue;
      for (int i = 100; i < 600; ++i) byStatus[i] += s->byStatus[i].load(std::memory_order_relaxed);
      for (int i = 0; i < ReactorStats::kProtocols; ++i) {
        byProtocol[i] += s->byProtocol[i].load(std::memory_order_relaxed);
      }
      for (size_t b = 0; b <= kLatencyBuckets; ++b) {
        latency[b] += s->latency[b].load(std::memory_order_relaxed);
      }
      sumUs += s->latencySumUs.load(std::memory_order_relaxed);
      open += s->openConnections.load(std::memory_order_relaxed);
    }
  }
  std::string out;
  out.reserve(4096);
  out.append("# HELP kuai_requests_total Requests answered, by status code.\n"
             "# TYPE kuai_requests_total counter\n");
  for (int i = 100; i < 600; ++i) {
    if (!byStatus[i]) continue;
    out.append("kuai_requests_total{code=\"");
    appendU(out, uint64_t(i));
    out.append("\"} ");
    appendU(out, byStatus[i]);
    out.push_back('\n');
  }
  out.append("# HELP kuai_protocol_requests_total Requests answered, by protocol.\n"
             "# TYPE kuai_protocol_requests_total counter\n"
             "kuai_protocol_requests_total{protocol=\"http/1.1\"} ");
  appendU(out, byProtocol[ReactorStats::kHttp1]);
  out.append("\nkuai_protocol_requests_total{protocol=\"h2\"} ");
  appendU(out, byProtocol[ReactorStats::kHttp2]);
  out.push_back('\n');
  out.append("# HELP kuai_request_duration_seconds Time from a request's head to its response's end.\n"
             "# TYPE kuai_request_duration_seconds histogram\n");
  uint64_t cumulative = 0;
  char bound[32];
  for (size_t b = 0; b < kLatencyBuckets; ++b) {
    cumulative += latency[b];
    std::snprintf(bound, sizeof(bound), "%g", double(kLatencyBoundsUs[b]) / 1e6);
    out.append("kuai_request_duration_seconds_bucket{le=\"").append(bound).append("\"} ");
    appendU(out, cumulative);
    out.push_back('\n');
  }
  cumulative += latency[kLatencyBuckets];
  out.append("kuai_request_duration_seconds_bucket{le=\"+Inf\"} ");
  appendU(out, cumulative);
  std::snprintf(bound, sizeof(bound), "%.6f", double(sumUs) / 1e6);
  out.append("\nkuai_request_duration_seconds_sum ").append(bound);
  out.append("\nkuai_request_duration_seconds_count ");
  appendU(out, cumulative);
  out.append("\n# HELP kuai_open_connections Client connections open now.\n"
             "# TYPE kuai_open_connections gauge\nkuai_open_connections ");
  out.append(std::to_string(open));
  out.push_back('\n');

  // Upstreams: summed over reactors, by route and address.
  struct Sum {
    int64_t idle = 0, active = 0, down = 0;
    uint64_t connects = 0, failures = 0, requests = 0;
    int reactors = 0;
  };
  std::map<std::pair<std::string, std::string>, Sum> ups;
  for (const UpstreamMetric& m : upstreamMetrics()) {
    Sum& s = ups[{m.route, m.upstream}];
    const UpstreamCounters& c = *m.counters;
    s.idle += c.idle.load(std::memory_order_relaxed);
    s.active += c.active.load(std::memory_order_relaxed);
    s.down += c.down.load(std::memory_order_relaxed);
    s.connects += c.connects.load(std::memory_order_relaxed);
    s.failures += c.failures.load(std::memory_order_relaxed);
    s.requests += c.requests.load(std::memory_order_relaxed);
    ++s.reactors;
  }
  if (ups.empty()) return out;
  auto series = [&](const char* name, const char* type, const char* help, auto value) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
    out.append(name).append(" ").append(type).append("\n");
    for (const auto& [key, s] : ups) {
      out.append(name).append("{route=\"");
      appendLabel(out, key.first);
      out.append("\",upstream=\"");
      appendLabel(out, key.second);
      out.append("\"} ");
      out.append(std::to_string(value(s)));
      out.push_back('\n');
    }
  };
  series("kuai_upstream_idle_connections", "gauge", "Keep-alive connections waiting in the pools.",
         [](const Sum& s) { return s.idle; });
  series("kuai_upstream_active_connections", "gauge", "Upstream connections carrying a request.",
         [](const Sum& s) { return s.active; });
  series("kuai_upstream_connects_total", "counter", "Upstream connections opened.",
         [](const Sum& s) { return s.connects; });
  series("kuai_upstream_requests_total", "counter", "Requests sent upstream.",
         [](const Sum& s) { return s.requests; });
  series("kuai_upstream_failures_total", "counter",
         "Connect errors, resets, timeouts and malformed responses.",
         [](const Sum& s) { return s.failures; });
  series("kuai_upstream_down", "gauge", "Reactors that have the upstream marked down.",
         [](const Sum& s) { return s.down; });
  return out;
}

// ---------------------------------------------------------------------------

struct AccessLog::State {
  int fd = -1;
  bool ownFd = false;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;
  bool stop = false;
  std::thread writer;
};

std::shared_ptr<AccessLog> AccessLog::open(const std::string& path, std::string& err) {
  std::shared_ptr<AccessLog> log(new AccessLog());
  log->state_ = std::make_unique<State>();
  State& st = *log->state_;
  if (path == "-") {
    st.fd = 1;
  } else {
    st.fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (st.fd < 0) {
      err = "access log " + path + ": " + std::strerror(errno);
      return nullptr;
    }
    st.ownFd = true;
  }
  st.writer = std::thread([&st] {
    std::unique_lock<std::mutex> lock(st.mu);
    while (true) {
      st.cv.wait(lock, [&] { return st.stop || !st.queue.empty(); });
      if (st.queue.empty() && st.stop) return;
      std::string batch = std::move(st.queue.front());
      st.queue.pop_front();
      lock.unlock();
      size_t off = 0;
      while (off < batch.size()) {
        ssize_t n = ::write(st.fd, batch.data() + off, batch.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // disk full or closed: the batch is dropped
        off += size_t(n);
      }
      lock.lock();
    }
  });
  return log;
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_one();
  state_->writer.join();
  if (state_->ownFd) ::close(state_->fd);
}

void AccessLog::submit(std::string& lines) {
  if (lines.empty()) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    // Bounded: when the disk cannot keep up, old batches are dropped rather
    // than memory growing without end.
    if (state_->queue.size() >= 1024) state_->queue.pop_front();
    state_->queue.push_back(std::move(lines));
  }
  lines.clear();
  state_->cv.notify_one();
}

void formatCombined(std::string& out, std::string_view addr, time_t when,
                    std::string_view requestLine, int status, uint64_t bytes,
                    std::string_view referer, std::string_view agent) {
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  tm t;
  ::gmtime_r(&when, &t);
  char stamp[40];
  std::snprintf(stamp, sizeof(stamp), "[%02d/%s/%04d:%02d:%02d:%02d +0000]", t.tm_mday,
                kMonths[t.tm_mon], t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
  // Quoted fields: quotes, backslashes and control bytes are escaped (\xHH).
  auto quoted = [&out](std::string_view v) {
    out.push_back('"');
    if (v.empty()) out.push_back('-');
    for (unsigned char c : v) {
      if (c == '"' || c == '\\' || c < 0x20 || c == 0x7f) {
        char esc[8];
        std::snprintf(esc, sizeof(esc), "\\x%02X", c);
        out.append(esc);
      } else {
        out.push_back(char(c));
      }
    }
    out.push_back('"');
  };
  out.append(addr.empty() ? std::string_view("-") : addr).append(" - - ").append(stamp);
  out.push_back(' ');
  quoted(requestLine);
  out.push_back(' ');
  out.append(std::to_string(status)).push_back(' ');
  out.append(std::to_string(bytes)).push_back(' ');
  quoted(referer);
  out.push_back(' ');
  quoted(agent);
  out.push_back('\n');
}

}  // namespace kuai::server
