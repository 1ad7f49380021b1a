#include "scripting/shared_sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>

#include "scripting/v8_util.h"
#include "server/listener.h"

namespace kuai::scripting {

namespace {

std::mutex gMutex;
std::map<std::string, int> gPorts;  // tcp and udp keys -> the port they share

struct UnixSocket {
  int fd = -1;
  int users = 0;
  std::string path;
};
// Unix sockets still open when the process ends have their paths unlinked
// (kuai ends gracefully on SIGTERM; the next start would find them in use).
struct UnixSockets : std::map<std::string, UnixSocket> {
  ~UnixSockets() {
    for (auto& [key, s] : *this) {
      if (!s.path.empty() && s.path[0] != '\0') ::unlink(s.path.c_str());
    }
  }
};
UnixSockets gUnix;

// A bound UDP socket on ip:port with SO_REUSEPORT; -errno on failure. The
// first for a key binds once without SO_REUSEPORT, so that a port another
// process shares that way is not silently split (and port 0 gets its port).
int openUdp(int family, const std::string& ip, int& port, bool v6only, bool join) {
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    if (::inet_pton(AF_INET6, ip.c_str(), &a.sin6_addr) != 1) return -EINVAL;
    len = sizeof(a);
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) return -EINVAL;
    len = sizeof(a);
  }
  auto setPort = [&](int p) {
    if (family == AF_INET6) reinterpret_cast<sockaddr_in6&>(ss).sin6_port = htons(uint16_t(p));
    else reinterpret_cast<sockaddr_in&>(ss).sin_port = htons(uint16_t(p));
  };
  int one = 1;
  auto make = [&](bool reuse) {
    int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    if (family == AF_INET6 && v6only) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (reuse) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      int err = errno;
      ::close(fd);
      return -err;
    }
    return fd;
  };
  setPort(port);
  if (!join) {
    int probe = make(false);
    if (probe < 0) return probe;
    sockaddr_storage bound{};
    socklen_t blen = sizeof(bound);
    ::getsockname(probe, reinterpret_cast<sockaddr*>(&bound), &blen);
    port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                    : reinterpret_cast<sockaddr_in&>(bound).sin_port);
    setPort(port);
    ::close(probe);
  }
  return make(true);
}

int openUnix(const std::string& path, int backlog) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a.sun_path)) return -ENAMETOOLONG;
  std::memcpy(a.sun_path, path.data(), path.size());
  // An abstract name (a leading NUL) counts its bytes; a path ends at its NUL.
  socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '\0' ? 0 : 1));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) < 0 || ::listen(fd, backlog > 0 ? backlog : 511) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

v8::Local<v8::Value> pair(v8::Isolate* iso, int fd, int port) {
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  v8::Local<v8::Array> a = v8::Array::New(iso, 2);
  a->Set(ctx, 0, v8::Integer::New(iso, fd)).Check();
  a->Set(ctx, 1, v8::Integer::New(iso, port)).Check();
  return a;
}

}  // namespace

void shareListen(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  std::string kind = toStdString(iso, args[0]);
  std::string key = kind + " " + toStdString(iso, args[1]);
  std::string where = toStdString(iso, args[2]);
  int number = args[3]->Int32Value(ctx).FromMaybe(0);
  if (kind == "unix") return args.GetReturnValue().Set(shareUnixSocket(where, number));
  std::lock_guard<std::mutex> lock(gMutex);

  auto known = gPorts.find(key);
  bool join = known != gPorts.end();
  int port = join ? known->second : number;
  if (kind == "tcp") {
    try {
      int fd = server::openListeners(where, port, 1, join)[0];
      gPorts[key] = port;
      return args.GetReturnValue().Set(pair(iso, fd, port));
    } catch (const std::exception&) {
      return args.GetReturnValue().SetNull();
    }
  }
  bool v6only = args.Length() > 4 && args[4]->BooleanValue(iso);
  int fd = openUdp(kind == "udp6" ? AF_INET6 : AF_INET, where, port, v6only, join);
  if (fd < 0) return args.GetReturnValue().Set(fd);
  gPorts[key] = port;
  args.GetReturnValue().Set(pair(iso, fd, port));
}

void shareUnlisten(const v8::FunctionCallbackInfo<v8::Value>& args) {
  releaseUnixSocket(toStdString(args.GetIsolate(), args[0]));
}

int shareUnixSocket(const std::string& path, int backlog) {
  std::lock_guard<std::mutex> lock(gMutex);
  auto it = gUnix.find(path);
  if (it == gUnix.end()) {
    int fd = openUnix(path, backlog);
    if (fd < 0) return fd;
    it = gUnix.emplace(path, UnixSocket{fd, 0, path}).first;
  }
  int dup = ::fcntl(it->second.fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return -errno;
  ++it->second.users;
  return dup;
}

void releaseUnixSocket(const std::string& path) {
  std::lock_guard<std::mutex> lock(gMutex);
  auto it = gUnix.find(path);
  if (it == gUnix.end() || --it->second.users > 0) return;
  ::close(it->second.fd);
  if (!path.empty() && path[0] != '\0') ::unlink(path.c_str());
  gUnix.erase(it);
}

}  // namespace kuai::scripting
