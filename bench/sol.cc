// sol: a "speed of light" HTTP/1.1 responder for the benchmark floor.
//
// One thread, one io_uring, no parsing beyond counting request terminators:
// every "\r\n\r\n" seen on a connection is answered with the same fixed
// 200 response ("Hello, World!", with Server and Date headers so the byte
// count is comparable to real servers). Requests may be pipelined and a
// terminator may be split across reads. It is not a server: no request bodies,
// no Connection: close, no timeouts. It exists only to show how fast the
// native hello case could be on this machine with this kernel.
//
// io_uring usage (liburing 2.3): multishot accept, multishot recv with a
// provided buffer ring (IOSQE_BUFFER_SELECT), one send per connection per
// batch of completions carrying all responses owed, io_uring_submit_and_wait.
//
// Usage: sol PORT [HOST]   (HOST defaults to 127.0.0.1)

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kCqEntries = 65536;
constexpr unsigned kBufCount = 1024;  // power of two (buffer ring size)
constexpr unsigned kBufSize = 4096;
constexpr int kBufGroup = 0;

enum Op : uint64_t { kAccept = 1, kRecv = 2, kSend = 3 };

uint64_t Tag(Op op, int fd) { return (uint64_t(op) << 32) | uint32_t(fd); }

struct Conn {
  uint8_t match = 0;        // progress through "\r\n\r\n"
  bool open = false;
  bool recv_live = false;   // a multishot recv is armed
  bool send_inflight = false;
  bool queued = false;      // on the flush list
  uint32_t pending = 0;     // responses owed but not yet in a send
  std::string out;          // bytes of the send in flight
  size_t out_off = 0;
};

class Sol {
 public:
  explicit Sol(int listen_fd) : listen_fd_(listen_fd) {}

  int Init() {
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = kCqEntries;
    int r = io_uring_queue_init_params(kRingEntries, &ring_, &p);
    if (r < 0) {  // older kernel: fall back to plainer flags
      p = io_uring_params{};
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = kCqEntries;
      r = io_uring_queue_init_params(kRingEntries, &ring_, &p);
    }
    if (r < 0) {
      fprintf(stderr, "sol: io_uring_queue_init: %s\n", strerror(-r));
      return -1;
    }

    // Provided buffer ring: the ring itself must be page aligned.
    size_t ring_bytes = kBufCount * sizeof(io_uring_buf);
    void* mem = nullptr;
    if (posix_memalign(&mem, 4096, ring_bytes) != 0) return -1;
    memset(mem, 0, ring_bytes);
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(br_);
    reg.ring_entries = kBufCount;
    reg.bgid = kBufGroup;
    r = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (r < 0) {
      fprintf(stderr, "sol: io_uring_register_buf_ring: %s\n", strerror(-r));
      return -1;
    }
    io_uring_buf_ring_init(br_);
    bufs_ = static_cast<char*>(malloc(size_t(kBufCount) * kBufSize));
    for (unsigned i = 0; i < kBufCount; i++)
      io_uring_buf_ring_add(br_, bufs_ + size_t(i) * kBufSize, kBufSize, i,
                            io_uring_buf_ring_mask(kBufCount), i);
    io_uring_buf_ring_advance(br_, kBufCount);

    RefreshResponse(time(nullptr));
    ArmAccept();
    return 0;
  }

  [[noreturn]] void Run() {
    std::vector<int> flush;
    for (;;) {
      int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        fprintf(stderr, "sol: io_uring_submit_and_wait: %s\n", strerror(-r));
        exit(1);
      }
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        Handle(cqe);
        seen++;
      }
      io_uring_cq_advance(&ring_, seen);

      time_t now = time(nullptr);
      if (now != date_second_) RefreshResponse(now);

      // One send per connection for all responses owed after this batch.
      flush.swap(flush_);
      for (int fd : flush) {
        conns_[fd].queued = false;
        StartSend(fd);
      }
      flush.clear();
    }
  }

 private:
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (!sqe) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void ArmAccept() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, Tag(kAccept, listen_fd_));
  }

  void ArmRecv(int fd) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
    io_uring_sqe_set_data64(sqe, Tag(kRecv, fd));
    conns_[fd].recv_live = true;
  }

  Conn& ConnFor(int fd) {
    if (size_t(fd) >= conns_.size()) conns_.resize(size_t(fd) * 2 + 64);
    return conns_[fd];
  }

  void Handle(io_uring_cqe* cqe) {
    uint64_t data = io_uring_cqe_get_data64(cqe);
    Op op = Op(data >> 32);
    int fd = int(uint32_t(data));
    bool more = cqe->flags & IORING_CQE_F_MORE;
    switch (op) {
      case kAccept:
        if (cqe->res >= 0) OnAccept(cqe->res);
        if (!more) ArmAccept();
        break;
      case kRecv:
        OnRecv(fd, cqe, more);
        break;
      case kSend:
        OnSend(fd, cqe->res);
        break;
    }
  }

  void OnAccept(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Conn& c = ConnFor(fd);
    c = Conn{};
    c.open = true;
    ArmRecv(fd);
  }

  void OnRecv(int fd, io_uring_cqe* cqe, bool more) {
    Conn& c = conns_[fd];
    int res = cqe->res;
    if (res > 0) {
      unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
      const char* p = bufs_ + size_t(bid) * kBufSize;
      c.pending += Count(c, p, size_t(res));
      io_uring_buf_ring_add(br_, const_cast<char*>(p), kBufSize, bid,
                            io_uring_buf_ring_mask(kBufCount), 0);
      io_uring_buf_ring_advance(br_, 1);
      if (c.pending && !c.send_inflight && !c.queued) {
        c.queued = true;
        flush_.push_back(fd);
      }
    }
    if (!more) {
      c.recv_live = false;
      if (res > 0 || res == -ENOBUFS) {
        ArmRecv(fd);  // multishot ended but the peer is still there
      } else {
        MaybeClose(fd);  // EOF or error
      }
    }
  }

  // Counts complete "\r\n\r\n" terminators, carrying partial matches across
  // reads in c.match.
  static uint32_t Count(Conn& c, const char* p, size_t n) {
    uint32_t found = 0;
    const char* end = p + n;
    uint8_t m = c.match;
    while (p < end) {
      if (m == 0) {
        p = static_cast<const char*>(memchr(p, '\r', size_t(end - p)));
        if (!p) break;
        m = 1;
        p++;
        continue;
      }
      char ch = *p++;
      if (ch == '\r') {
        m = (m == 2) ? 3 : 1;
      } else if (ch == '\n' && (m == 1 || m == 3)) {
        if (m == 3) {
          found++;
          m = 0;
        } else {
          m = 2;
        }
      } else {
        m = 0;
      }
    }
    c.match = m;
    return found;
  }

  void StartSend(int fd) {
    Conn& c = conns_[fd];
    if (!c.open || c.send_inflight || c.pending == 0) return;
    c.out.clear();
    c.out.reserve(size_t(c.pending) * response_.size());
    for (uint32_t i = 0; i < c.pending; i++) c.out += response_;
    c.pending = 0;
    c.out_off = 0;
    c.send_inflight = true;
    SubmitSend(fd);
  }

  void SubmitSend(int fd) {
    Conn& c = conns_[fd];
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_send(sqe, fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Tag(kSend, fd));
  }

  void OnSend(int fd, int res) {
    Conn& c = conns_[fd];
    if (res < 0) {
      c.send_inflight = false;
      c.pending = 0;
      // Wake the armed recv so it ends with an error or EOF and we close.
      shutdown(fd, SHUT_RDWR);
      MaybeClose(fd);
      return;
    }
    c.out_off += size_t(res);
    if (c.out_off < c.out.size()) {
      SubmitSend(fd);  // short send: the rest
      return;
    }
    c.send_inflight = false;
    if (!c.recv_live) {
      MaybeClose(fd);
    } else if (c.pending && !c.queued) {
      c.queued = true;
      flush_.push_back(fd);
    }
  }

  void MaybeClose(int fd) {
    Conn& c = conns_[fd];
    if (!c.open || c.recv_live || c.send_inflight) return;
    c.open = false;
    c.pending = 0;
    std::string().swap(c.out);
    close(fd);
  }

  void RefreshResponse(time_t now) {
    date_second_ = now;
    char date[64];
    tm t;
    gmtime_r(&now, &t);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &t);
    response_ = "HTTP/1.1 200 OK\r\nServer: sol\r\nDate: ";
    response_ += date;
    response_ +=
        "\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        "Hello, World!";
  }

  int listen_fd_;
  io_uring ring_{};
  io_uring_buf_ring* br_ = nullptr;
  char* bufs_ = nullptr;
  std::vector<Conn> conns_;
  std::vector<int> flush_;
  std::string response_;
  time_t date_second_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: sol PORT [HOST]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  const char* host = argc == 3 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "sol: bad host %s\n", host);
    return 2;
  }
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 ||
      listen(lfd, 4096) < 0) {
    perror("sol: bind/listen");
    return 1;
  }

  static Sol sol(lfd);
  if (sol.Init() < 0) return 1;
  fprintf(stderr, "sol: listening on %s:%d\n", host, port);
  sol.Run();
}
