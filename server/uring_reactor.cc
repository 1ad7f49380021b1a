// UringReactor: the io_uring backend. One ring per reactor thread, created on that
// thread (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them).
//
//  - accept: one multishot accept on the reactor's own SO_REUSEPORT socket;
//  - receive: one multishot recv per connection, into a ring of provided buffers
//    shared by the reactor's connections; a buffer goes back to the ring as soon
//    as the connection has parsed it (a request spanning buffers is copied by the
//    parser);
//  - send: responses are queued during a wake-up and each dirty connection gets
//    one send SQE at its end, so a wake-up ends in one io_uring_enter;
//  - files: sendfile(2) straight from the page cache on the non-blocking socket
//    (to a peer on this machine, a copy from the file's mapping: file_send.h),
//    with a POLLOUT poll when the socket buffer is full.
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "server/transport.h"
#include "server/file_send.h"
#include "server/listener.h"
#include "server/reactor.h"

namespace kuai::server {

namespace {

enum Op : uint64_t {
  kAccept = 1,
  kRecv = 2,
  kSend = 3,
  kPollOut = 4,
  kWake = 5,
  kCancel = 6,
  kTick = 7,
  kConnect = 8,
};
// A tag for a completion that needs no pointer.
constexpr uint64_t kLoopPoll = 14;  // event loop fd readable
constexpr uint64_t kOpMask = 15;    // Transport and Listener are 16-aligned

// Transport::backendFlags bits.
constexpr uint8_t kRecvArmed = 1;
constexpr uint8_t kReadPaused = 8;  // the handler asked us to stop reading
constexpr uint8_t kSending = 2;
constexpr uint8_t kPolling = 4;

// Provided receive buffers per reactor. 512 x 4 KiB: requests are small, a
// buffer is returned right after parsing, and idle connections hold none.
constexpr unsigned kBufferCount = 512;
constexpr unsigned kBufferSize = 4096;
constexpr unsigned kBufferGroup = 0;

inline uint64_t tag(void* p, Op op) { return reinterpret_cast<uint64_t>(p) | op; }

class UringReactor final : public Reactor {
 public:
  using Reactor::Reactor;
  ~UringReactor() override;

  bool init(std::string& err) override;
  void run() override;
  const char* backendName() const override { return "io_uring"; }

 protected:
  void flush(Transport* c) override;
  void release(Transport* c) override;
  void setReading(Transport* c, bool on) override;
  void armListener(Listener* l) override;
  void disarmListener(Listener* l) override;
  void sweepListener(Listener* l);
  void startConnect(Transport* c) override;

 private:
  void onConnect(Transport* c, int res);
  io_uring_sqe* sqe();
  void armLoopPoll();
  void armRecv(Transport* c);
  void armWake();
  void armTick();
  void onCompletion(io_uring_cqe* cqe);
  void drainCompletions();
  void onAccept(Listener* l, io_uring_cqe* cqe);
  void onRecv(Transport* c, io_uring_cqe* cqe);
  void onSend(Transport* c, int res);
  void onPollOut(Transport* c, int res);
  void sendFile(Transport* c);
  void waitWritable(Transport* c);
  void opDone(Transport* c);
  void returnBuffer(unsigned bid);

  io_uring ring_{};
  bool ringReady_ = false;
  io_uring_buf_ring* bufRing_ = nullptr;
  char* buffers_ = nullptr;
  unsigned buffersReturned_ = 0;
  bool loopPollArmed_ = false;
  int polledFd_ = -1;
  bool loopReady_ = false;
  uint64_t wakeValue_ = 0;
  __kernel_timespec tickSpec_{};
  std::vector<Transport*> rearm_;     // recv ended (ENOBUFS): arm again after the batch
  std::vector<Transport*> graveyard_; // closed, no I/O in flight: delete after the batch
};

UringReactor::~UringReactor() {
  if (ringReady_) {
    if (bufRing_) io_uring_unregister_buf_ring(&ring_, kBufferGroup);
    io_uring_queue_exit(&ring_);  // cancels and waits for whatever is in flight
  }
  teardown();  // frees every transport, the graveyard's included
  if (bufRing_) ::munmap(bufRing_, kBufferCount * sizeof(io_uring_buf));
  if (buffers_) ::munmap(buffers_, size_t(kBufferCount) * kBufferSize);
}

bool setupRing(io_uring& ring, std::string& err) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 16384;
  int rc = io_uring_queue_init_params(2048, &ring, &p);
  if (rc == -EINVAL) {
    // Older kernels: no single-issuer / deferred task running.
    p = io_uring_params{};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    rc = io_uring_queue_init_params(2048, &ring, &p);
  }
  if (rc < 0) {
    err = std::string("io_uring_setup: ") + std::strerror(-rc);
    return false;
  }
  return true;
}

bool UringReactor::init(std::string& err) {
  if (!setupRing(ring_, err)) return false;
  ringReady_ = true;

  size_t ringBytes = kBufferCount * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, ringBytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    err = std::string("mmap: ") + std::strerror(errno);
    return false;
  }
  bufRing_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(bufRing_);
  reg.ring_entries = kBufferCount;
  reg.bgid = kBufferGroup;
  if (int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
    ::munmap(bufRing_, ringBytes);
    bufRing_ = nullptr;
    err = std::string("io_uring provided buffer ring: ") + std::strerror(-rc);
    return false;
  }
  mem = ::mmap(nullptr, size_t(kBufferCount) * kBufferSize, PROT_READ | PROT_WRITE,
               MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    err = std::string("mmap: ") + std::strerror(errno);
    return false;
  }
  buffers_ = static_cast<char*>(mem);
  io_uring_buf_ring_init(bufRing_);
  const int mask = io_uring_buf_ring_mask(kBufferCount);
  for (unsigned i = 0; i < kBufferCount; ++i) {
    io_uring_buf_ring_add(bufRing_, buffers_ + size_t(i) * kBufferSize, kBufferSize, i, mask, i);
  }
  io_uring_buf_ring_advance(bufRing_, kBufferCount);

  for (auto& l : listeners_) armListener(l.get());
  armWake();
  armTick();
  return true;
}

io_uring_sqe* UringReactor::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void UringReactor::armListener(Listener* l) {
  if (l->armed || l->fd < 0) return;
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, tag(l, kAccept));
  l->armed = true;
}

// The thread's event loop (libuv) signals work through its backend fd (an
// epoll fd), polled once per turn: a one-shot poll completes at once while
// the fd is still ready, where a multishot poll waits for a new wake-up. (A
// turn may leave work ready: libuv stops reading a socket after a short
// read, and its EOF, already there, raises no new wake-up.) A restarted
// environment brings a new loop, hence a new fd: move the poll.
void UringReactor::armLoopPoll() {
  if (!loop_) return;
  int fd = loop_->fd();
  if (loopPollArmed_ && fd == polledFd_) return;
  if (loopPollArmed_) {
    io_uring_sqe* c = sqe();
    io_uring_prep_cancel64(c, kLoopPoll, 0);
    io_uring_sqe_set_data64(c, kCancel);
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, POLLIN);
  io_uring_sqe_set_data64(s, kLoopPoll);
  loopPollArmed_ = true;
  polledFd_ = fd;
}

// The periodic tick is a timeout request in the ring rather than a timeout on
// every io_uring_enter: waits then need no timer of their own.
void UringReactor::armTick() {
  tickSpec_.tv_sec = 0;
  tickSpec_.tv_nsec = long(kTickMs) * 1'000'000;
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout(s, &tickSpec_, 0, 0);
  io_uring_sqe_set_data64(s, kTick);
}

void UringReactor::armWake() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, wakeFd(), &wakeValue_, sizeof(wakeValue_), 0);
  io_uring_sqe_set_data64(s, kWake);
}

void UringReactor::armRecv(Transport* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv_multishot(s, c->fd(), nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(s, tag(c, kRecv));
  c->backendFlags |= kRecvArmed;
  ++c->opsInFlight;
}

void UringReactor::disarmListener(Listener* l) {
  if (l->armed) {
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, tag(l, kAccept), 0);
    io_uring_sqe_set_data64(s, kCancel);
  }
  if (l->fd < 0) return;
  if (l->shared || listenersHandedOver()) {
    // Another process accepts from this socket too. A connection whose
    // wake-up went to our accept (the kernel wakes one waiter) just as it was
    // cancelled would wait for nobody: once the cancel is through, whatever
    // is queued is accepted here (and answered once), then the fd closes.
    l->sweep = true;
    if (!l->armed) sweepListener(l);
    return;
  }
  // The ring holds its own reference to the socket until the cancelled accept
  // completes; shutdown() stops the listening state right away, so the kernel
  // refuses new connections instead of queueing them for nobody.
  ::shutdown(l->fd, SHUT_RDWR);
  ::close(l->fd);
  l->fd = -1;
}

void UringReactor::sweepListener(Listener* l) {
  for (;;) {
    int fd = ::accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    Transport* c = addConnection(fd, l);
    if (c->state() != Transport::State::kClosed) armRecv(c);
  }
  ::close(l->fd);
  l->fd = -1;
  l->sweep = false;
}

void UringReactor::returnBuffer(unsigned bid) {
  io_uring_buf_ring_add(bufRing_, buffers_ + size_t(bid) * kBufferSize, kBufferSize, bid,
                        io_uring_buf_ring_mask(kBufferCount), buffersReturned_);
  ++buffersReturned_;
}

void UringReactor::opDone(Transport* c) {
  --c->opsInFlight;
  if (c->state() == Transport::State::kClosed && c->opsInFlight == 0) {
    graveyard_.push_back(c);
  }
}

void UringReactor::setReading(Transport* c, bool on) {
  if (on) {
    if (!(c->backendFlags & kReadPaused)) return;
    c->backendFlags &= ~kReadPaused;
    if (!(c->backendFlags & kRecvArmed) && !c->closed() && c->connected()) armRecv(c);
    return;
  }
  if (c->backendFlags & kReadPaused) return;
  c->backendFlags |= kReadPaused;
  if (c->backendFlags & kRecvArmed) {
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, tag(c, kRecv), 0);
    io_uring_sqe_set_data64(s, kCancel);
  }
}

void UringReactor::release(Transport* c) {
  if (c->opsInFlight == 0) {
    graveyard_.push_back(c);
    return;
  }
  // Wake whatever is pending on it: shutdown makes a recv, send or poll
  // complete at once; a connect in flight needs cancelling.
  if (c->outbound()) {
    io_uring_sqe* q = sqe();
    io_uring_prep_cancel_fd(q, c->fd(), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(q, kCancel);
  }
  ::shutdown(c->fd(), SHUT_RDWR);
}

void UringReactor::flush(Transport* c) {
  if (c->backendFlags & (kSending | kPolling)) return;  // resumes on completion
  c->fillWire();
  if (c->state() == Transport::State::kClosed) return;
  OutputQueue& out = c->wire();
  if (out.empty()) {
    if (c->output().empty()) c->onDrained();
    return;
  }
  if (out.head().isFile()) {
    sendFile(c);
    return;
  }
  std::string_view bytes = out.headMemory();
  if (out.nextIsFile()) {
    // A file range follows (a static response's head): the head goes now,
    // marked as more to come, so it leaves in one segment with the file's
    // first bytes rather than on its own ahead of them (what a lone small
    // segment costs shows on the receiving side: about a fifth more of its
    // CPU per MiB, measured with wrk), and the file follows at once.
    ssize_t n = ::send(c->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_MORE | MSG_DONTWAIT);
    if (n == ssize_t(bytes.size())) {
      out.consume(size_t(n));
      sendFile(c);
      return;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      c->onError(-errno);
      return;
    }
    if (n > 0) out.consume(size_t(n));
    bytes = out.headMemory();  // the rest through the ring
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, c->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, tag(c, kSend));
  out.freezeHead(true);
  c->backendFlags |= kSending;
  ++c->opsInFlight;
}

void UringReactor::sendFile(Transport* c) {
  OutputQueue& out = c->wire();
  while (!out.empty() && out.head().isFile()) {
    ssize_t n = sendFileRange(c->fd(), out, c->peerOnThisMachine());
    if (n > 0) continue;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      waitWritable(c);
      return;
    }
    // EIO: the file shrank under us; the promised length cannot be kept.
    c->onError(-errno);
    return;
  }
  flush(c);
}

// The socket buffer is full: flush again once it drains.
void UringReactor::waitWritable(Transport* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, c->fd(), POLLOUT);
  io_uring_sqe_set_data64(s, tag(c, kPollOut));
  c->backendFlags |= kPolling;
  ++c->opsInFlight;
}

void UringReactor::onSend(Transport* c, int res) {
  c->backendFlags &= ~kSending;
  OutputQueue& out = c->wire();
  out.freezeHead(false);
  if (c->state() == Transport::State::kClosed) return;
  if (res == -EAGAIN || res == -EINTR) {
    waitWritable(c);
    return;
  }
  if (res < 0) {
    c->onError(res);
    return;
  }
  out.consume(size_t(res));
  flush(c);
}

void UringReactor::onPollOut(Transport* c, int res) {
  c->backendFlags &= ~kPolling;
  if (c->state() == Transport::State::kClosed) return;
  if (res < 0 && res != -EINTR) {
    c->onError(res);
    return;
  }
  flush(c);
}

void UringReactor::onAccept(Listener* l, io_uring_cqe* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    l->armed = false;
    if (l->sweep && cqe->res < 0) sweepListener(l);  // the cancel is through
  }
  if (cqe->res < 0) {
    // EMFILE/ENFILE and friends: the multishot ended; armed again after the batch.
    return;
  }
  int fd = cqe->res;
  // (Accepted as the listener was being closed: served all the same, as one
  // request, since the client's connection is already established.)
  Transport* c = addConnection(fd, l);
  if (c->state() != Transport::State::kClosed) armRecv(c);
  if (l->sweep && !l->armed) sweepListener(l);
}

void UringReactor::onRecv(Transport* c, io_uring_cqe* cqe) {
  int res = cqe->res;
  bool more = cqe->flags & IORING_CQE_F_MORE;
  if (cqe->flags & IORING_CQE_F_BUFFER) {
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (res > 0 && c->state() != Transport::State::kClosed) {
      c->onData(buffers_ + size_t(bid) * kBufferSize, size_t(res));
    }
    returnBuffer(bid);
  }
  if (!more) {
    c->backendFlags &= ~kRecvArmed;
    if (c->state() != Transport::State::kClosed) {
      if (res == 0) {
        c->onEof();
      } else if (c->backendFlags & kReadPaused) {
        // Cancelled (or ended) while paused: armed again by setReading(on).
      } else if (res == -ENOBUFS || res == -ECANCELED || res > 0) {
        rearm_.push_back(c);  // -ECANCELED: a pause that was lifted before it took
      } else if (res < 0) {
        c->onError(res);
      }
    }
    opDone(c);
  }
}

void UringReactor::onCompletion(io_uring_cqe* cqe) {
  uint64_t data = io_uring_cqe_get_data64(cqe);
  if (data == kLoopPoll) {
    if (cqe->res == -ECANCELED) return;  // the poll of a replaced loop
    loopReady_ = true;
    loopPollArmed_ = false;  // re-armed after the loop's turn
    return;
  }
  Op op = Op(data & kOpMask);
  auto* c = reinterpret_cast<Transport*>(data & ~kOpMask);
  switch (op) {
    case kAccept:
      onAccept(reinterpret_cast<Listener*>(data & ~kOpMask), cqe);
      break;
    case kRecv:
      onRecv(c, cqe);
      break;
    case kSend:
      onSend(c, cqe->res);
      opDone(c);
      break;
    case kPollOut:
      onPollOut(c, cqe->res);
      opDone(c);
      break;
    case kWake:  // a stop or a posted task: tick() acts on it
      armWake();
      break;
    case kCancel:
      break;
    case kTick:
      armTick();
      break;
    case kConnect:
      onConnect(c, cqe->res);
      opDone(c);
      break;
    default:
      break;
  }
}

// Outbound: io_uring connects; once connected, a transport is read and
// written like an accepted one.
void UringReactor::startConnect(Transport* c) {
  io_uring_sqe* q = sqe();
  io_uring_prep_connect(q, c->fd(), c->peerSockaddr(), c->peerSockaddrLen());
  io_uring_sqe_set_data64(q, tag(c, kConnect));
  ++c->opsInFlight;
}

void UringReactor::onConnect(Transport* c, int res) {
  if (c->closed()) return;
  c->onConnect(res);
  if (c->closed() || !c->connected()) return;
  if (!(c->backendFlags & (kRecvArmed | kReadPaused))) armRecv(c);
  if (!c->output().empty()) markDirty(c);
}

void UringReactor::drainCompletions() {
  unsigned head;
  unsigned seen = 0;
  unsigned advanced = 0;
  io_uring_cqe* cqe;
  uint64_t since = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    onCompletion(cqe);
    if (batchFlushDue(++seen, since)) {
      io_uring_cq_advance(&ring_, seen - advanced);  // room for what the submit completes
      advanced = seen;
      flushDirty();
      io_uring_submit(&ring_);
    }
  }
  io_uring_cq_advance(&ring_, seen - advanced);
}

void UringReactor::run() {
  armLoopPoll();
  if (loop_) loop_->runOnce();
  while (true) {
    io_uring_cqe* cqe = nullptr;
    // A Node environment's next timer bounds the wait; otherwise the tick does.
    int loopTimeout = loop_ ? loop_->timeoutMs() : -1;
    uint64_t loopDeadline = nowMs_ + uint64_t(loopTimeout < 0 ? 0 : loopTimeout);
    if (loopTimeout == 0) {
      io_uring_submit(&ring_);
      io_uring_get_events(&ring_);
    } else if (loopTimeout > 0 && uint64_t(loopTimeout) < kTickMs) {
      __kernel_timespec ts{};
      ts.tv_sec = loopTimeout / 1000;
      ts.tv_nsec = long(loopTimeout % 1000) * 1'000'000;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    } else {
      io_uring_submit_and_wait(&ring_, 1);  // -EINTR: look again
    }
    updateClock();

    (void)cqe;
    if (loop_) {
      loop_->runBatch([](void* self) { static_cast<UringReactor*>(self)->drainCompletions(); },
                      this);
    } else {
      drainCompletions();
    }
    if (buffersReturned_) {
      io_uring_buf_ring_advance(bufRing_, buffersReturned_);
      buffersReturned_ = 0;
    }
    for (Transport* c : rearm_) {
      if (c->state() != Transport::State::kClosed &&
          !(c->backendFlags & (kRecvArmed | kReadPaused))) {
        armRecv(c);
      }
    }
    rearm_.clear();

    // Also when the batch made the loop due (a setImmediate from a request's
    // handler): its turn comes before the next wait, as Node's check phase
    // follows the poll phase that ran the handler.
    if (loop_ && (loopReady_ || (loopTimeout >= 0 && nowMs_ >= loopDeadline) || loop_->timeoutMs() == 0)) {
      loopReady_ = false;
      loop_->runOnce();
      armLoopPoll();
    }
    tick();
    if (!draining_) {
      for (auto& l : listeners_) {
        if (!l->armed) armListener(l.get());
      }
    }
    flushDirty();
    runLater();
    for (Transport* c : graveyard_) destroyTransport(c);
    graveyard_.clear();
    if (finished() || quiescent()) break;
  }
}

}  // namespace

std::unique_ptr<Reactor> makeUringReactor(int index, const ServerConfig& config) {
  return std::make_unique<UringReactor>(index, config);
}

bool uringAvailable(std::string& why) {
  io_uring ring{};
  if (!setupRing(ring, why)) return false;
  // The features kuai relies on: provided buffer rings (5.19+) and multishot
  // recv/accept (6.0+). Registering a one-entry buffer ring is a cheap probe.
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  bool ok = mem != MAP_FAILED;
  if (ok) {
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = 1;
    reg.bgid = 0;
    int rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0) {
      why = std::string("io_uring provided buffer rings: ") + std::strerror(-rc);
      ok = false;
    } else {
      io_uring_unregister_buf_ring(&ring, 0);
    }
    ::munmap(mem, 4096);
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (ok && probe) {
    if (!io_uring_opcode_supported(probe, IORING_OP_SEND) ||
        !io_uring_opcode_supported(probe, IORING_OP_ACCEPT)) {
      why = "io_uring lacks send/accept";
      ok = false;
    }
  }
  if (probe) io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  return ok;
}

}  // namespace kuai::server
