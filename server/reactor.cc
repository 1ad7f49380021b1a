#include "server/reactor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "server/http1_session.h"
#include "server/transport.h"
#include "server/router.h"

namespace kuai::server {

Reactor::Reactor(int index, const ServerConfig& config, int listenFd,
                 std::shared_ptr<tls::TlsContext> tls)
    : index_(index), config_(config) {
  (void)tls;  // listeners carry their own TLS context (addInitialListener)
  if (listenFd >= 0) {
    auto l = std::make_unique<Listener>();
    l->fd = listenFd;
    listeners_.push_back(std::move(l));
  }
  wakeFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  stats_ = registerReactorStats();
  updateClock();
  router_ = std::make_unique<Router>(config.site, *this);
}

void Reactor::setAppHandler(const std::string& app, Handler* handler) {
  for (auto& [path, h] : appHandlers_) {
    if (path == app) {
      h = handler;
      return;
    }
  }
  appHandlers_.emplace_back(app, handler);
}

Handler* Reactor::appHandler(const std::string& app) const {
  for (const auto& [path, h] : appHandlers_) {
    if (path == app) return h;
  }
  return nullptr;
}

void Reactor::runLater() {
  for (size_t i = 0; i < later_.size(); ++i) later_[i].fn(later_[i].arg);
  later_.clear();
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
  router_.reset();
  runLater();
  while (outHead_) destroyTransport(outHead_);  // closed ones whose I/O never completed
  if (accessLog_) accessLog_->submit(logBuf_);
  accessLog_.reset();
}

Reactor::~Reactor() {
  teardown();
  if (wakeFd_ >= 0) ::close(wakeFd_);
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
}

void Reactor::requestStop() {
  stopRequested_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(wakeFd_, &one, sizeof(one));
  (void)n;
}

void Reactor::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(tlsMutex_);
    posted_.push_back(std::move(fn));
  }
  postedPending_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(wakeFd_, &one, sizeof(one));
  (void)n;
}

void Reactor::runPosted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(tlsMutex_);
    tasks.swap(posted_);
    postedPending_.store(false, std::memory_order_relaxed);
  }
  for (auto& fn : tasks) fn();
}

void Reactor::addInitialListener(int fd, std::shared_ptr<tls::TlsContext> tls) {
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  l->tls = std::move(tls);
  listeners_.push_back(std::move(l));
  ++initialListeners_;
}

void Reactor::setObservers(bool metrics, std::shared_ptr<AccessLog> log) {
  metrics_ = metrics;
  accessLog_ = std::move(log);
  observing_ = metrics_ || accessLog_;
}

void Reactor::setSite(std::shared_ptr<const Site> site,
                      std::vector<std::shared_ptr<tls::TlsContext>> tls,
                      std::shared_ptr<AccessLog> log) {
  {
    std::lock_guard<std::mutex> lock(tlsMutex_);
    pendingSite_ = std::move(site);
    pendingSiteTls_ = std::move(tls);
    pendingLog_ = std::move(log);
  }
  sitePending_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(wakeFd_, &one, sizeof(one));
  (void)n;
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
  return listeners_.empty() && live_ == 0 && (!loop_ || !loop_->alive());
}

Transport* Reactor::addConnection(int fd, Listener* from) {
  if (sitePending_.load(std::memory_order_acquire)) applyPendingSite();
  tls::TlsContext* ctx = from->tls.get();
  auto* c = new Transport(*this, fd, ctx ? ctx->newSession() : nullptr);
  c->setProtocol(std::make_unique<Http1Session>(*c, *from));
  c->next = head_;
  if (head_) head_->prev = c;
  head_ = c;
  ++live_;
  stats_->openConnections.fetch_add(1, std::memory_order_relaxed);
  if (draining_) c->onShutdown();
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
    stats_->openConnections.fetch_sub(1, std::memory_order_relaxed);
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
    std::snprintf(date_, sizeof(date_), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                  kDays[t.tm_wday], t.tm_mday, kMonths[t.tm_mon], t.tm_year + 1900, t.tm_hour,
                  t.tm_min, t.tm_sec);
  }
}

void Reactor::beginDrain() {
  if (draining_) return;
  draining_ = true;
  drainDeadlineMs_ = nowMs_ + config_.timeouts.shutdownMs;
  stopAccepting();
  for (Transport* c = head_; c; c = c->next) c->onShutdown();
}

// A reload (setSite) takes effect here: at the next tick, or before the next
// connection is accepted, whichever comes first.
void Reactor::applyPendingSite() {
  std::shared_ptr<const Site> site;
  std::vector<std::shared_ptr<tls::TlsContext>> tls;
  std::shared_ptr<AccessLog> log;
  {
    std::lock_guard<std::mutex> lock(tlsMutex_);
    site = std::move(pendingSite_);
    tls = std::move(pendingSiteTls_);
    log = std::move(pendingLog_);
    sitePending_.store(false, std::memory_order_relaxed);
  }
  if (!site) return;
  if (accessLog_) accessLog_->submit(logBuf_);
  setObservers(!site->logging.metricsPath.empty(), std::move(log));
  router_->setSite(std::move(site));
  // Listeners keep their order; listeners_ begins with the initial ones
  // unless a stop retired them.
  for (size_t i = 0; i < tls.size() && i < listeners_.size() && i < initialListeners_; ++i) {
    if (listeners_[i]->tls && tls[i]) listeners_[i]->tls = std::move(tls[i]);
  }
}

void Reactor::tick() {
  if (stopRequested_.load(std::memory_order_acquire) && !draining_) beginDrain();
  if (postedPending_.load(std::memory_order_acquire)) runPosted();
  if (sitePending_.load(std::memory_order_acquire)) applyPendingSite();
  if (nowMs_ - lastTickMs_ < kTickMs) return;
  lastTickMs_ = nowMs_;
  if (accessLog_ && !logBuf_.empty()) accessLog_->submit(logBuf_);
  for (Transport* c = head_; c; c = c->next) c->onTick(nowMs_);
  for (size_t i = 0; i < tickers_.size(); ++i) tickers_[i]->onTick(nowMs_);
  if (draining_ && nowMs_ >= drainDeadlineMs_) {
    for (Transport* c = head_; c; c = c->next) closeTransport(c);
  }
}

std::unique_ptr<Reactor> makeUringReactor(int index, const ServerConfig& config, int listenFd,
                                          std::shared_ptr<tls::TlsContext> tls);
std::unique_ptr<Reactor> makeEpollReactor(int index, const ServerConfig& config, int listenFd,
                                          std::shared_ptr<tls::TlsContext> tls);

std::unique_ptr<Reactor> makeReactor(IoBackend io, int index, const ServerConfig& config,
                                     int listenFd, std::shared_ptr<tls::TlsContext> tls) {
  if (io == IoBackend::kEpoll) return makeEpollReactor(index, config, listenFd, std::move(tls));
  return makeUringReactor(index, config, listenFd, std::move(tls));
}

}  // namespace kuai::server
