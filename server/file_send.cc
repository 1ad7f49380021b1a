#include "server/file_send.h"

#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace kuai::server {

namespace {

constexpr size_t kCopyChunk = 128 * 1024;

char* copyBuffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kCopyChunk]);
  return buf.get();
}

}  // namespace

ssize_t sendFileRange(int sock, OutputQueue& out, bool peerOnThisMachine) {
  OutputQueue::Segment& seg = out.head();
  size_t chunk = seg.remaining > (1u << 30) ? (1u << 30) : size_t(seg.remaining);
  ssize_t n;
  if (!peerOnThisMachine) {
    off_t off = off_t(seg.offset);
    n = ::sendfile(sock, seg.file->fd, &off, chunk);
  } else if (seg.file->map) {
    n = ::send(sock, seg.file->map + seg.offset, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EFAULT) errno = EIO;  // the file shrank under us
  } else {
    char* buf = copyBuffer();
    ssize_t got = ::pread(seg.file->fd, buf, std::min(chunk, kCopyChunk), off_t(seg.offset));
    if (got <= 0) {
      if (got == 0) errno = EIO;
      return -1;
    }
    // What the socket does not take now is read again next time.
    n = ::send(sock, buf, size_t(got), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  if (n == 0) {  // sendfile: the file shrank under us
    errno = EIO;
    return -1;
  }
  if (n > 0) out.consume(size_t(n));
  return n;
}

}  // namespace kuai::server
