#include "server/reactor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <memory>

#include "server/http1_session.h"
#include "server/metrics.h"
#include "server/transport.h"

namespace kuai::server {

Reactor::Reactor(int index, const ServerConfig& config) : index_(index), config_(config) {
  updateClock();
  context_ = std::make_unique<ThreadContext>(*this, config.site);
}

void Reactor::runLater() {
  for (size_t i = 0; i < later_.size(); ++i) later_[i].fn(later_[i].arg);
  later_.clear();
}

void Reactor::closeConnections(std::vector<uint64_t> ids, bool now) {
  struct Job {
    Reactor* reactor;
    std::vector<uint64_t> ids;
    bool now;
  };
  std::sort(ids.begin(), ids.end());
  later(
      [](void* arg) {
        std::unique_ptr<Job> job(static_cast<Job*>(arg));
        for (Transport* c = job->reactor->head_; c;) {
          Transport* next = c->next;
          if (!c->closed() && std::binary_search(job->ids.begin(), job->ids.end(), c->id())) {
            if (job->now) c->closeSoon();
            else c->onShutdown();
          }
          c = next;
        }
      },
      new Job{this, std::move(ids), now});
}

bool Reactor::connectionBytes(uint64_t id, uint64_t& read, uint64_t& written) const {
  for (const Transport* c = head_; c; c = c->next) {
    if (c->id() != id) continue;
    if (c->closed()) return false;
    read = c->bytesRead();
    written = c->bytesWritten();
    return true;
  }
  return false;
}

void Reactor::answerClientError(uint64_t id, std::string bytes, RawThen then) {
  struct Job {
    Reactor* reactor;
    uint64_t id;
    std::string bytes;
    RawThen then;
  };
  later(
      [](void* arg) {
        std::unique_ptr<Job> job(static_cast<Job*>(arg));
        for (Transport* c = job->reactor->head_; c; c = c->next) {
          if (c->id() != job->id) continue;
          if (c->closed()) return;
          if (!job->bytes.empty()) {
            c->output().buffer().append(job->bytes);
            c->flush();
          }
          if (job->then == RawThen::kEnd) c->closeAfterOutput();
          if (job->then == RawThen::kDestroy) c->closeSoon();
          return;
        }
      },
      new Job{this, id, std::move(bytes), then});
}

void Reactor::teardown() {
  if (tearingDown_) return;
  tearingDown_ = true;
  for (Transport* c = head_; c;) {
    Transport* n = c->next;
    delete c;
    c = n;
  }
  head_ = nullptr;
  live_ = 0;
  context_->shutdown();  // routes and pools close their connections
  runLater();
  while (outHead_) destroyTransport(outHead_);  // closed ones whose I/O never completed
}

Reactor::~Reactor() {
  teardown();
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
}

void Reactor::addInitialListener(int fd, std::shared_ptr<tls::TlsContext> tls, bool h2c, bool shared) {
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  l->h2c = h2c;
  l->shared = shared;
  l->tls = std::move(tls);
  listeners_.push_back(std::move(l));
  ++initialListeners_;
}

void Reactor::readMailbox() {
  for (ReactorMessage& m : mailbox_.take()) {
    if (auto* site = std::get_if<SiteMessage>(&m)) {
      applySite(*site);
    } else if (auto* task = std::get_if<TaskMessage>(&m)) {
      tasks_.push_back(std::move(task->fn));
    } else {
      stopRequested_ = true;
    }
  }
}

// A reload takes effect here: at the next turn, or before the next connection
// is accepted, whichever comes first. Requests in flight keep their routes.
void Reactor::applySite(SiteMessage& m) {
  if (!m.site) return;
  context_->setSite(std::move(m.site), std::move(m.log));
  // Listeners keep their order; listeners_ begins with the initial ones
  // unless a stop retired them.
  for (size_t i = 0; i < m.tls.size() && i < listeners_.size() && i < initialListeners_; ++i) {
    if (listeners_[i]->tls && m.tls[i]) listeners_[i]->tls = std::move(m.tls[i]);
  }
}

Transport* Reactor::connect(const sockaddr* addr, socklen_t len, Protocol* owner, int& err) {
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto* t = new Transport(*this, fd, addr, len, owner);
  ++outbound_;
  t->next = outHead_;
  if (outHead_) outHead_->prev = t;
  outHead_ = t;
  startConnect(t);
  return t;
}

void Reactor::markDirty(Transport* c) {
  if (c->dirty) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void Reactor::flushDirty() {
  // flush() may queue more connections (e.g. a close after the last byte).
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Transport* c = dirty_[i];
    c->dirty = false;
    // (An outbound transport still connecting is flushed once connected.)
    if (!c->closed() && c->connected()) flush(c);
  }
  dirty_.clear();
}

bool Reactor::batchRanLong(uint64_t& since) {
  uint64_t now = monotonicMicros();
  if (since == 0) {
    since = now;
    return false;
  }
  if (now - since < kBatchFlushMicros) return false;
  since = now;
  return true;
}

Listener* Reactor::addListener(int fd, Handler* handler,
                               std::shared_ptr<tls::TlsContext> tls) {
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  l->handler = handler;
  l->tls = std::move(tls);
  Listener* raw = l.get();
  listeners_.push_back(std::move(l));
  if (!draining_) armListener(raw);
  return raw;
}

void Reactor::removeListener(Listener* l) {
  for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
    if (it->get() != l) continue;
    disarmListener(l);
    // The backend may still hold the pointer in a pending completion: keep the
    // (now closed) record until the reactor goes away.
    retired_.push_back(std::move(*it));
    listeners_.erase(it);
    return;
  }
}

void Reactor::stopAccepting() {
  for (auto& l : listeners_) disarmListener(l.get());
  for (auto& l : listeners_) retired_.push_back(std::move(l));
  listeners_.clear();
}

bool Reactor::quiescent() const {
  return listeners_.empty() && live_ == 0 && !acceptsInFlight() && (!loop_ || !loop_->alive());
}

Transport* Reactor::addConnection(int fd, Listener* from) {
  if (mailbox_.pending()) readMailbox();
  tls::TlsContext* ctx = from->tls.get();
  auto* c = new Transport(*this, fd, ctx ? ctx->newSession() : nullptr);
  c->setProtocol(std::make_unique<Http1Session>(*c, *from));
  c->next = head_;
  if (head_) head_->prev = c;
  head_ = c;
  ++live_;
  context_->stats().openConnections.fetch_add(1, std::memory_order_relaxed);
  // (While draining, a connection accepted as its listener closed gets one
  // answer: HTTP/1 closes after it, HTTP/2 sends GOAWAY after its first streams.)
  return c;
}

void Reactor::closeTransport(Transport* c) {
  if (c->closed()) return;
  c->markClosed();
  if (tearingDown_ && c->outbound()) {
    destroyTransport(c);
    return;
  }
  release(c);
}

void Reactor::shutdownWrite(Transport* c) { ::shutdown(c->fd(), SHUT_WR); }

void Reactor::destroyTransport(Transport* c) {
  Transport*& head = c->outbound() ? outHead_ : head_;
  if (c->prev) c->prev->next = c->next;
  else head = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->outbound()) {
    --outbound_;
  } else {
    --live_;
    context_->stats().openConnections.fetch_sub(1, std::memory_order_relaxed);
  }
  if (c->dirty) {
    for (auto& d : dirty_) {
      if (d == c) d = nullptr;
    }
    std::erase(dirty_, nullptr);
  }
  delete c;
}

void Reactor::updateClock() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  nowMs_ = uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec != nowSec_) {
    nowSec_ = ts.tv_sec;
    tm t;
    ::gmtime_r(&nowSec_, &t);
    // Date: <day-name>, DD Mon YYYY HH:MM:SS GMT (IMF-fixdate), written by hand:
    // strftime's %a/%b follow the locale.
    static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char line[64];  // room for any int the format could meet
    int n = std::snprintf(line, sizeof(line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                          kDays[t.tm_wday], t.tm_mday, kMonths[t.tm_mon], t.tm_year + 1900, t.tm_hour,
                          t.tm_min, t.tm_sec);
    if (n == int(kDateLineLen)) std::memcpy(date_, line, kDateLineLen + 1);
  }
}

void Reactor::beginDrain() {
  if (draining_) return;
  draining_ = true;
  drainDeadlineMs_ = nowMs_ + config_.timeouts.shutdownMs;
  stopAccepting();
  for (Transport* c = head_; c; c = c->next) c->onShutdown();
}

// A reactor that served a burst (a tick with more than kBusyWakeups
// wake-ups: a few hundred a second) and has been quiet for a second since
// hands back what the burst left: its loop's (a JS heap collected and
// shrunk) and the C heap's free memory (malloc_trim: every arena's free
// pages, which glibc otherwise keeps for the next burst; at most once a
// second for the whole process). Once per quiet spell, at most every
// kSettleEveryMs per reactor (a later quiet tick catches up), never under
// load or light traffic; the next burst faults the pages it needs back in.
void Reactor::settleWhenQuiet() {
  constexpr uint32_t kBusyWakeups = 32;
  constexpr uint64_t kSettleEveryMs = 10'000;
  uint32_t wakeups = wakeups_;
  wakeups_ = 0;
  if (wakeups > 2) {  // more than the tick's own wake-up and maybe one more
    quietTicks_ = 0;
    if (wakeups > kBusyWakeups) busySinceSettled_ = true;
    return;
  }
  if (!busySinceSettled_ || ++quietTicks_ < 1000 / kTickMs) return;
  if (settledMs_ && nowMs_ - settledMs_ < kSettleEveryMs) return;
  busySinceSettled_ = false;
  settledMs_ = nowMs_;
  if (loop_) loop_->onQuiet();
  static std::atomic<uint64_t> lastTrimMs{0};
  uint64_t last = lastTrimMs.load(std::memory_order_relaxed);
  if (nowMs_ - last < 1000 || !lastTrimMs.compare_exchange_strong(last, nowMs_)) return;
  ::malloc_trim(0);
}

void Reactor::tick() {
  ++wakeups_;
  if (mailbox_.pending()) readMailbox();
  if (stopRequested_ && !draining_) beginDrain();
  if (!tasks_.empty()) {
    std::vector<std::function<void()>> tasks;
    tasks.swap(tasks_);
    for (auto& fn : tasks) fn();
  }
  if (nowMs_ - lastTickMs_ < kTickMs) return;
  lastTickMs_ = nowMs_;
  settleWhenQuiet();
  context_->flushLog();
  for (Transport* c = head_; c; c = c->next) c->onTick(nowMs_);
  for (size_t i = 0; i < tickers_.size(); ++i) tickers_[i]->onTick(nowMs_);
  if (draining_ && nowMs_ >= drainDeadlineMs_) {
    for (Transport* c = head_; c; c = c->next) closeTransport(c);
  }
}

std::unique_ptr<Reactor> makeUringReactor(int index, const ServerConfig& config);
std::unique_ptr<Reactor> makeEpollReactor(int index, const ServerConfig& config);

std::unique_ptr<Reactor> makeReactor(IoBackend io, int index, const ServerConfig& config) {
  if (io == IoBackend::kEpoll) return makeEpollReactor(index, config);
  return makeUringReactor(index, config);
}

}  // namespace kuai::server
