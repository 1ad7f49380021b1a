#include "server/listener.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace kuai::server {

namespace {

std::string where(const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

[[noreturn]] void fail(const std::string& host, int port, const std::string& why) {
  throw std::runtime_error("cannot listen on " + where(host, port) + ": " + why);
}

std::string reason(int err) {
  if (err == EADDRINUSE) return "address already in use";
  if (err == EACCES) return "permission denied (ports below 1024 need privileges)";
  if (err == EADDRNOTAVAIL) return "address not available on this machine";
  return std::strerror(err);
}

void setPort(sockaddr_storage& ss, int port) {
  if (ss.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6&>(ss).sin6_port = htons(uint16_t(port));
  else reinterpret_cast<sockaddr_in&>(ss).sin_port = htons(uint16_t(port));
}

std::string describe(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text));
    port = ntohs(a.sin6_port);
    return "[" + std::string(text) + "]:" + std::to_string(port);
  }
  const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
  ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(a.sin_port));
}

}  // namespace

InheritedSockets& InheritedSockets::get() {
  static InheritedSockets sockets;
  return sockets;
}

InheritedSockets::InheritedSockets() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* count = std::getenv("LISTEN_FDS");
  if (pid && count && std::strtol(pid, nullptr, 10) == long(::getpid())) {
    long n = std::strtol(count, nullptr, 10);
    for (long i = 0; i < n && i < 1024; ++i) {
      int fd = 3 + int(i);
      int listening = 0;
      socklen_t len = sizeof(listening);
      if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      fds_.push_back(fd);
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
}

std::vector<std::vector<int>> InheritedSockets::take(const std::string& host, int& port, int count) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return {};
  sockaddr_storage want{};
  std::memcpy(&want, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  setPort(want, port);
  std::vector<int> matching;
  for (auto it = fds_.begin(); it != fds_.end();) {
    sockaddr_storage have{};
    socklen_t len = sizeof(have);
    bool same = ::getsockname(*it, reinterpret_cast<sockaddr*>(&have), &len) == 0;
    // Port 0 (any free port) takes the sockets passed for that address, on
    // whatever port they have (the port of the first one met).
    if (same && port == 0) {
      int havePort = ntohs(have.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(have).sin6_port
                                                      : reinterpret_cast<sockaddr_in&>(have).sin_port);
      sockaddr_storage probe = want;
      setPort(probe, havePort);
      if (describe(have) == describe(probe)) {
        want = probe;
        port = havePort;
      }
    }
    if (same && describe(have) == describe(want)) {
      matching.push_back(*it);
      it = fds_.erase(it);
    } else {
      ++it;
    }
  }
  if (matching.empty() || count <= 0) return {};
  std::vector<std::vector<int>> perReactor(static_cast<size_t>(count));
  int one = 1;
  for (size_t k = 0; k < matching.size(); ++k) {
    ::setsockopt(matching[k], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    perReactor[k % size_t(count)].push_back(matching[k]);
  }
  for (size_t i = matching.size(); i < size_t(count); ++i) {
    perReactor[i].push_back(::fcntl(matching[i % matching.size()], F_DUPFD_CLOEXEC, 3));
  }
  return perReactor;
}

namespace {
std::atomic<bool> gHandedOver{false};
}  // namespace

void setListenersHandedOver() { gHandedOver.store(true); }
bool listenersHandedOver() { return gHandedOver.load(); }

void InheritedSockets::closeUnused() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

std::vector<std::string> InheritedSockets::unused() const {
  std::vector<std::string> out;
  for (int fd : fds_) {
    sockaddr_storage have{};
    socklen_t len = sizeof(have);
    out.push_back(::getsockname(fd, reinterpret_cast<sockaddr*>(&have), &len) == 0 ? describe(have)
                                                                                  : "fd " + std::to_string(fd));
  }
  return out;
}

bool steerByClientAddress(int fd, unsigned groupSize, std::string& err) {
  if (groupSize < 2) return true;
  // Classic BPF run on each SYN: loads at SKF_NET_OFF read the IP header.
  // A = the version nibble; IPv4: A = source address; IPv6: A = the four
  // words of the source address xor-ed; then A = (A * 2654435761) >> 16
  // (Fibonacci hashing: neighbouring addresses spread) and the socket
  // index is A % groupSize.
  const uint32_t net = uint32_t(SKF_NET_OFF);
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, net + 0),
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 2, 0),  // IPv6: skip the next two
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net + 12),   // IPv4 source address
      BPF_JUMP(BPF_JMP | BPF_JA, 10, 0, 0),           // to the hash
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net + 8),    // IPv6 source address, word by word
      BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net + 12),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net + 16),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, net + 20),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 2654435761u),  // the hash
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, groupSize),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(code) / sizeof(code[0])), code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0) {
    err = std::string("cannot steer connections by client address: ") + std::strerror(errno);
    return false;
  }
  return true;
}

std::vector<int> openListeners(const std::string& host, int& port, int count, bool joinExisting) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || !res) {
    fail(host, port, std::string("cannot resolve host: ") + gai_strerror(rc));
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  socklen_t addrLen = res->ai_addrlen;
  int family = res->ai_family;
  ::freeaddrinfo(res);
  setPort(addr, port);

  // Probe without SO_REUSEPORT first: sockets that share a port with
  // SO_REUSEPORT (another kuai, say) would otherwise let us bind beside them
  // and silently split the traffic.
  int one = 1;
  if (!joinExisting) {
    int probe = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) fail(host, port, std::strerror(errno));
    ::setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(probe, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0) {
      int err = errno;
      ::close(probe);
      fail(host, port, reason(err));
    }
    if (port == 0) {
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      ::getsockname(probe, reinterpret_cast<sockaddr*>(&bound), &len);
      port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                               : reinterpret_cast<sockaddr_in&>(bound).sin_port);
      setPort(addr, port);
    }
    ::close(probe);
  }

  std::vector<int> fds;
  for (int i = 0; i < count; ++i) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      for (int f : fds) ::close(f);
      fail(host, port, std::strerror(errno));
    }
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    // Inherited by accepted sockets: responses go out without Nagle's delay.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0 || ::listen(fd, 4096) < 0) {
      int err = errno;
      ::close(fd);
      for (int f : fds) ::close(f);
      fail(host, port, reason(err));
    }
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace kuai::server
