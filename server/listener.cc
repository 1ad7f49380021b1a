#include "server/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

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
