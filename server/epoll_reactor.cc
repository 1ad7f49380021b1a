// EpollReactor: the fallback backend for hosts that refuse io_uring (containers
// often do). Same Reactor contract: level-triggered epoll, reads into one
// per-reactor buffer, output flushed once per wake-up with send/sendfile.
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "server/transport.h"
#include "server/reactor.h"

namespace kuai::server {

namespace {

constexpr uint8_t kWantOut = 1;  // EPOLLOUT in the interest set
// epoll_event.data: a Transport* (8-aligned), a Listener* | 1, or a tag.
constexpr uint64_t kWakeTag = 2;
constexpr uint64_t kLoopTag = 4;
constexpr uint64_t kSocketTag = 8;  // Socket* | 8 (sockets and connections are 16-aligned)
constexpr size_t kReadBufferSize = 64 * 1024;

class EpollReactor final : public Reactor {
 public:
  using Reactor::Reactor;
  ~EpollReactor() override {
    teardown();
    if (epfd_ >= 0) ::close(epfd_);
  }

  bool init(std::string& err) override {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      err = std::string("epoll_create1: ") + std::strerror(errno);
      return false;
    }
    buffer_.resize(kReadBufferSize);
    for (auto& l : listeners_) armListener(l.get());
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakeFd_, &ev);
    return true;
  }

  const char* backendName() const override { return "epoll"; }

  void run() override {
    std::vector<epoll_event> events(512);
    int polledFd = -1;
    if (loop_) loop_->runOnce();
    while (true) {
      if (loop_ && loop_->fd() != polledFd) {
        // A restarted environment brings a new loop (and fd).
        if (polledFd >= 0) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, polledFd, nullptr);
        polledFd = loop_->fd();
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kLoopTag;
        ::epoll_ctl(epfd_, EPOLL_CTL_ADD, polledFd, &ev);
      }
      int wait = connectResults_.empty() ? int(kTickMs) : 0;
      int loopTimeout = loop_ ? loop_->timeoutMs() : -1;
      if (loopTimeout >= 0 && loopTimeout < wait) wait = loopTimeout;
      int n = ::epoll_wait(epfd_, events.data(), int(events.size()), wait);
      updateClock();
      bool loopReady = loopTimeout >= 0 && wait == loopTimeout;
      batch_ = {events.data(), n, &loopReady};
      if (loop_) {
        loop_->runBatch([](void* self) { static_cast<EpollReactor*>(self)->handleEvents(); }, this);
      } else {
        handleEvents();
      }
      if (loop_ && loopReady) loop_->runOnce();
      tick();
      flushDirty();
      runLater();
      for (Transport* c : graveyard_) destroyTransport(c);
      graveyard_.clear();
      for (Socket* s : socketGraveyard_) destroySocket(s);
      socketGraveyard_.clear();
      if (finished() || quiescent()) break;
    }
  }

  void handleEvents() {
    epoll_event* events = batch_.events;
    int n = batch_.count;
    bool& loopReady = *batch_.loopReady;
    {
      for (int i = 0; i < n; ++i) {
        const epoll_event& ev = events[i];
        if ((ev.data.u64 & 15) == kSocketTag) {
          socketEvent(reinterpret_cast<Socket*>(ev.data.u64 & ~uint64_t(15)), ev.events);
        } else if (ev.data.u64 & 1) {
          acceptAll(reinterpret_cast<Listener*>(ev.data.u64 & ~uint64_t(1)));
        } else if (ev.data.u64 == kLoopTag) {
          loopReady = true;
        } else if (ev.data.u64 == kWakeTag) {
          uint64_t v;
          ssize_t r = ::read(wakeFd_, &v, sizeof(v));
          (void)r;  // a stop or a posted task: tick() acts on it
        } else {
          auto* c = static_cast<Transport*>(ev.data.ptr);
          if (c->state() == Transport::State::kClosed) continue;
          if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) readFrom(c);
          if ((ev.events & EPOLLOUT) && c->state() != Transport::State::kClosed) markDirty(c);
        }
      }
    }
    // Connects that failed before reaching the poll set.
    std::vector<Socket*> results;
    results.swap(connectResults_);
    for (Socket* s : results) {
      if (!s->closed) s->owner->onSocketConnect(s, -s->connectError);
    }
  }

 protected:
  // --- outbound sockets: level-triggered like connections ---
  static constexpr uint8_t kSockConnecting = 1;
  static constexpr uint8_t kSockWantOut = 2;
  static constexpr uint8_t kSockInSet = 4;

  void socketConnect(Socket* s) override {
    int rc = ::connect(s->fd, reinterpret_cast<sockaddr*>(&s->addr), s->addrLen);
    if (rc < 0 && errno != EINPROGRESS) {
      s->connectError = errno;
      connectResults_.push_back(s);
      return;
    }
    s->backendFlags |= kSockConnecting | kSockInSet;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = reinterpret_cast<uint64_t>(s) | kSocketTag;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, s->fd, &ev);
  }

  void socketUpdate(Socket* s) {
    if (!(s->backendFlags & kSockInSet)) return;
    uint32_t events = 0;
    if (s->reading) events |= EPOLLIN | EPOLLRDHUP;
    if (s->backendFlags & (kSockWantOut | kSockConnecting)) events |= EPOLLOUT;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = reinterpret_cast<uint64_t>(s) | kSocketTag;
    ::epoll_ctl(epfd_, EPOLL_CTL_MOD, s->fd, &ev);
  }

  void socketEvent(Socket* s, uint32_t events) {
    if (s->closed) return;
    if (s->backendFlags & kSockConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      s->backendFlags &= ~kSockConnecting;
      if (err == 0) {
        s->connected = true;
        if (!s->out.empty()) s->backendFlags |= kSockWantOut;
        socketUpdate(s);
      }
      s->owner->onSocketConnect(s, -err);
      return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && s->reading) {
      for (int i = 0; i < 4 && !s->closed && s->reading; ++i) {
        ssize_t n = ::recv(s->fd, buffer_.data(), buffer_.size(), 0);
        if (n > 0) {
          s->owner->onSocketData(s, buffer_.data(), size_t(n));
          if (size_t(n) < buffer_.size()) break;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        s->owner->onSocketEof(s, n == 0 ? 0 : -errno);
        return;
      }
    }
    if ((events & EPOLLOUT) && !s->closed && (s->backendFlags & kSockWantOut)) socketFlush(s);
  }

  void socketFlush(Socket* s) override {
    while (!s->out.empty()) {
      std::string_view bytes = s->out.headMemory();
      ssize_t n = ::send(s->fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        s->out.consume(size_t(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        if (!(s->backendFlags & kSockWantOut)) {
          s->backendFlags |= kSockWantOut;
          socketUpdate(s);
        }
        return;
      }
      s->owner->onSocketEof(s, -errno);
      return;
    }
    if (s->backendFlags & kSockWantOut) {
      s->backendFlags &= ~kSockWantOut;
      socketUpdate(s);
    }
    s->owner->onSocketDrained(s);
  }

  void socketReading(Socket* s, bool) override { socketUpdate(s); }

  void socketRelease(Socket* s) override {
    if (s->backendFlags & kSockInSet) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->fd, nullptr);
    s->backendFlags &= ~kSockInSet;
    socketGraveyard_.push_back(s);
  }

  void flush(Transport* c) override {
    OutputQueue& out = c->wire();
    while (true) {
      if (out.empty()) {
        c->fillWire();
        if (c->state() == Transport::State::kClosed) return;
        if (out.empty()) break;
      }
      OutputQueue::Segment& seg = out.head();
      ssize_t n;
      if (seg.isFile()) {
        off_t off = off_t(seg.offset);
        size_t chunk = seg.remaining > (1u << 30) ? (1u << 30) : size_t(seg.remaining);
        n = ::sendfile(c->fd(), seg.file->fd, &off, chunk);
        if (n == 0) {  // the file shrank under us
          closeTransport(c);
          return;
        }
      } else {
        std::string_view bytes = out.headMemory();
        n = ::send(c->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      }
      if (n > 0) {
        out.consume(size_t(n));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        setWantOut(c, true);
        return;
      }
      closeTransport(c);
      return;
    }
    setWantOut(c, false);
    if (c->output().empty()) c->onDrained();
  }

  void setReading(Transport* c, bool on) override {
    bool paused = c->backendFlags & kReadPaused;
    if (paused == !on) return;
    c->backendFlags = on ? (c->backendFlags & ~kReadPaused) : (c->backendFlags | kReadPaused);
    update(c, interest(c));
  }

  void release(Transport* c) override {
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd(), nullptr);
    graveyard_.push_back(c);
  }

  void armListener(Listener* l) override {
    if (l->armed || l->fd < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = reinterpret_cast<uint64_t>(l) | 1;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, l->fd, &ev);
    l->armed = true;
  }

  void disarmListener(Listener* l) override {
    if (l->fd < 0) return;
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, l->fd, nullptr);
    ::close(l->fd);
    l->fd = -1;
    l->armed = false;
  }

 private:
  void acceptAll(Listener* l) {
    for (int i = 0; i < 64 && l->fd >= 0; ++i) {
      int fd = ::accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or EMFILE: try again on the next event
      Transport* c = addConnection(fd, l);
      if (c->state() == Transport::State::kClosed) continue;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = c;
      ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  void readFrom(Transport* c) {
    // A few reads per event keeps one busy connection from starving the others;
    // level-triggered epoll reports the rest.
    for (int i = 0; i < 4; ++i) {
      ssize_t n = ::recv(c->fd(), buffer_.data(), buffer_.size(), 0);
      if (n > 0) {
        c->onData(buffer_.data(), size_t(n));
        if (c->state() == Transport::State::kClosed) return;
        if (size_t(n) < buffer_.size()) return;
        continue;
      }
      if (n == 0) {
        c->onEof();
        if (c->state() != Transport::State::kClosed) setWantIn(c, false);
        return;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) closeTransport(c);
      return;
    }
  }

  void update(Transport* c, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = c;
    ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd(), &ev);
  }

  // The interest set follows three flags: want to write, read side closed, and
  // reading paused by the handler.
  static uint32_t interest(Transport* c) {
    uint32_t ev = 0;
    if (!(c->backendFlags & (kReadClosed | kReadPaused))) ev |= EPOLLIN | EPOLLRDHUP;
    if (c->backendFlags & kWantOut) ev |= EPOLLOUT;
    return ev;
  }

  void setWantOut(Transport* c, bool on) {
    bool is = c->backendFlags & kWantOut;
    if (is == on) return;
    c->backendFlags = on ? (c->backendFlags | kWantOut) : (c->backendFlags & ~kWantOut);
    update(c, interest(c));
  }

  void setWantIn(Transport* c, bool on) {
    if (on) return;
    c->backendFlags |= kReadClosed;
    update(c, interest(c));
  }

  static constexpr uint8_t kReadClosed = 2;
  static constexpr uint8_t kReadPaused = 4;

  struct Batch {
    epoll_event* events = nullptr;
    int count = 0;
    bool* loopReady = nullptr;
  } batch_;
  int epfd_ = -1;
  std::vector<char> buffer_;
  std::vector<Transport*> graveyard_;
  std::vector<Socket*> socketGraveyard_;
  std::vector<Socket*> connectResults_;
};

}  // namespace

std::unique_ptr<Reactor> makeEpollReactor(int index, const ServerConfig& config, int listenFd,
                                          std::shared_ptr<tls::TlsContext> tls) {
  return std::make_unique<EpollReactor>(index, config, listenFd, std::move(tls));
}

}  // namespace kuai::server
