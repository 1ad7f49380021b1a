// EpollReactor: the fallback backend for hosts that refuse io_uring (containers
// often do). Same Reactor contract, the same code for accepted and outbound
// transports: level-triggered epoll, non-blocking connects, reads into one
// per-reactor buffer, output flushed once per wake-up with send/sendfile.
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "server/transport.h"
#include "server/file_send.h"
#include "server/reactor.h"

namespace kuai::server {

namespace {

// epoll_event.data: a Transport* (16-aligned), a Listener* | 1, or a tag.
constexpr uint64_t kWakeTag = 2;
constexpr uint64_t kLoopTag = 4;
constexpr size_t kReadBufferSize = 64 * 1024;

// Transport::backendFlags bits. The interest set follows them.
constexpr uint8_t kWantOut = 1;     // output waits for the socket buffer
constexpr uint8_t kReadClosed = 2;  // EOF seen: nothing more to read
constexpr uint8_t kReadPaused = 4;  // the protocol stopped reading
constexpr uint8_t kConnecting = 8;  // outbound, connect in progress
constexpr uint8_t kInSet = 16;      // registered with epoll

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
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakeFd(), &ev);
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
      // Also when the batch made the loop due (as in UringReactor::run).
      if (loop_ && (loopReady || loop_->timeoutMs() == 0)) loop_->runOnce();
      tick();
      flushDirty();
      runLater();
      for (Transport* c : graveyard_) destroyTransport(c);
      graveyard_.clear();
      if (finished() || quiescent()) break;
    }
  }

  void handleEvents() {
    epoll_event* events = batch_.events;
    int n = batch_.count;
    bool& loopReady = *batch_.loopReady;
    uint64_t since = 0;
    for (int i = 0; i < n; ++i) {
      if (i > 0 && batchFlushDue(unsigned(i), since)) flushDirty();
      const epoll_event& ev = events[i];
      if (ev.data.u64 & 1) {
        acceptAll(reinterpret_cast<Listener*>(ev.data.u64 & ~uint64_t(1)));
      } else if (ev.data.u64 == kLoopTag) {
        loopReady = true;
      } else if (ev.data.u64 == kWakeTag) {
        uint64_t v;
        ssize_t r = ::read(wakeFd(), &v, sizeof(v));
        (void)r;  // a stop or a posted task: tick() acts on it
      } else {
        transportEvent(static_cast<Transport*>(ev.data.ptr), ev.events);
      }
    }
    // Connects that failed before reaching the poll set.
    std::vector<std::pair<Transport*, int>> results;
    results.swap(connectResults_);
    for (auto [c, err] : results) c->onConnect(-err);
  }

 protected:
  void startConnect(Transport* c) override {
    int rc = ::connect(c->fd(), c->peerSockaddr(), c->peerSockaddrLen());
    if (rc < 0 && errno != EINPROGRESS) {
      connectResults_.emplace_back(c, errno);
      return;
    }
    c->backendFlags |= kConnecting | kInSet;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.ptr = c;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, c->fd(), &ev);
  }

  void flush(Transport* c) override {
    OutputQueue& out = c->wire();
    while (true) {
      if (out.empty()) {
        c->fillWire();
        if (c->closed()) return;
        if (out.empty()) break;
      }
      OutputQueue::Segment& seg = out.head();
      ssize_t n;
      if (seg.isFile()) {
        n = sendFileRange(c->fd(), out, c->peerOnThisMachine());
        if (n > 0) continue;
        if (errno == EIO) {  // the file shrank under us
          c->onError(-EIO);
          return;
        }
      } else {
        std::string_view bytes = out.headMemory();
        // (A head followed by a file range: held for the file's first bytes,
        // as in the io_uring backend.)
        n = ::send(c->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL | (out.nextIsFile() ? MSG_MORE : 0));
      }
      if (n > 0) {
        out.consume(size_t(n));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        setFlag(c, kWantOut, true);
        return;
      }
      c->onError(-errno);
      return;
    }
    setFlag(c, kWantOut, false);
    if (c->output().empty()) c->onDrained();
  }

  void setReading(Transport* c, bool on) override { setFlag(c, kReadPaused, !on); }

  void release(Transport* c) override {
    if (c->backendFlags & kInSet) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd(), nullptr);
    c->backendFlags &= ~kInSet;
    for (auto& r : connectResults_) {
      if (r.first == c) r.first = nullptr;
    }
    std::erase_if(connectResults_, [](const auto& r) { return r.first == nullptr; });
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
      if (c->closed()) continue;
      c->backendFlags |= kInSet;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = c;
      ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  void transportEvent(Transport* c, uint32_t events) {
    if (c->closed()) return;
    if (c->backendFlags & kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(c->fd(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      c->backendFlags &= ~kConnecting;
      c->onConnect(-err);
      if (c->closed() || !c->connected()) return;
      update(c);
      if (!c->output().empty()) markDirty(c);
      return;
    }
    // Errors and hang-ups are reported even while reading is paused: the
    // read then finds out what happened.
    if (((events & (EPOLLIN | EPOLLRDHUP)) && !(c->backendFlags & kReadPaused)) ||
        (events & (EPOLLHUP | EPOLLERR))) {
      readFrom(c);
    }
    if ((events & EPOLLOUT) && !c->closed()) markDirty(c);
  }

  void readFrom(Transport* c) {
    // A few reads per event keeps one busy connection from starving the others;
    // level-triggered epoll reports the rest.
    for (int i = 0; i < 4; ++i) {
      ssize_t n = ::recv(c->fd(), buffer_.data(), buffer_.size(), 0);
      if (n > 0) {
        c->onData(buffer_.data(), size_t(n));
        if (c->closed() || (c->backendFlags & kReadPaused)) return;
        if (size_t(n) < buffer_.size()) return;
        continue;
      }
      if (n == 0) {
        c->onEof();
        if (!c->closed()) setFlag(c, kReadClosed, true);
        return;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) c->onError(-errno);
      return;
    }
  }

  // The interest set: reading unless closed or paused, writing when output waits.
  void update(Transport* c) {
    if (!(c->backendFlags & kInSet) || (c->backendFlags & kConnecting)) return;
    epoll_event ev{};
    if (!(c->backendFlags & (kReadClosed | kReadPaused))) ev.events |= EPOLLIN | EPOLLRDHUP;
    if (c->backendFlags & kWantOut) ev.events |= EPOLLOUT;
    ev.data.ptr = c;
    ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd(), &ev);
  }

  void setFlag(Transport* c, uint8_t flag, bool on) {
    if (bool(c->backendFlags & flag) == on) return;
    c->backendFlags = on ? (c->backendFlags | flag) : (c->backendFlags & ~flag);
    update(c);
  }

  struct Batch {
    epoll_event* events = nullptr;
    int count = 0;
    bool* loopReady = nullptr;
  } batch_;
  int epfd_ = -1;
  std::vector<char> buffer_;
  std::vector<Transport*> graveyard_;
  std::vector<std::pair<Transport*, int>> connectResults_;  // connects that failed at once
};

}  // namespace

std::unique_ptr<Reactor> makeEpollReactor(int index, const ServerConfig& config) {
  return std::make_unique<EpollReactor>(index, config);
}

}  // namespace kuai::server
