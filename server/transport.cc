#include "server/transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "server/reactor.h"

namespace kuai::server {

Transport::Transport(Reactor& reactor, int fd, std::unique_ptr<tls::TlsSession> tls)
    : reactor_(reactor), fd_(fd), tls_(std::move(tls)) {
  phaseStartMs_ = lastProgressMs_ = reactor.nowMs();
  static thread_local uint64_t nextId = 0;
  id_ = ++nextId;
}

Transport::Transport(Reactor& reactor, int fd, const sockaddr* addr, socklen_t len, Protocol* owner)
    : reactor_(reactor), fd_(fd), outbound_(true), connected_(false), protocol_(owner) {
  addr_ = std::make_unique<sockaddr_storage>();
  std::memcpy(addr_.get(), addr, std::min<size_t>(len, sizeof(sockaddr_storage)));
  addrLen_ = len;
  phaseStartMs_ = lastProgressMs_ = reactor.nowMs();
  static thread_local uint64_t nextId = 0;
  id_ = ++nextId;
}

Transport::~Transport() {
  owned_.reset();  // tells its handlers the connection is gone
  if (fd_ >= 0) ::close(fd_);
}

uint64_t Transport::nowMs() const { return reactor_.nowMs(); }

void Transport::markClosed() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  if (outbound_) {
    protocol_ = nullptr;  // its owner closed it: no more callbacks
    return;
  }
  if (protocol_) protocol_->onClose();
}

void Transport::onConnect(int err) {
  if (state_ == State::kClosed) return;
  connected_ = err == 0;
  lastProgressMs_ = reactor_.nowMs();
  protocol_->onConnect(err);
}

void Transport::onError(int err) {
  if (state_ == State::kClosed) return;
  if (outbound_) {
    protocol_->onError(err);  // its owner closes it
    return;
  }
  close();
}

void Transport::onData(const char* data, size_t len) {
  if (tls_) {
    onTlsData(data, len);
    return;
  }
  if (state_ != State::kOpen) return;  // closing or lingering: leftovers are dropped
  bytesIn_ += len;
  protocol_->onData(data, len);
}

void Transport::onTlsData(const char* data, size_t len) {
  if (state_ == State::kClosed) return;
  std::string& plain = reactor_.context().plainScratch();
  plain.clear();
  tls::TlsSession::Status st = tls_->onCiphertext(data, len, plain);
  switch (st) {
    case tls::TlsSession::Status::kPlainHttp:
      // A plain-text request on the TLS port: the protocol answers it in
      // clear text (400), then the transport closes.
      tls_.reset();
      if (state_ == State::kOpen) protocol_->failPlainText();
      return;
    case tls::TlsSession::Status::kError:
      // Send the alert BoringSSL produced (if any), then close.
      if (tls_->hasOutput() && state_ == State::kOpen) {
        tls_->takeOutput(tlsOut_.buffer());
        reactor_.markDirty(this);
        closeAfterOutput();
      } else {
        close();
      }
      return;
    case tls::TlsSession::Status::kOk:
    case tls::TlsSession::Status::kClosed:
      break;
  }
  if (tls_->hasOutput()) {
    tls_->takeOutput(tlsOut_.buffer());
    reactor_.markDirty(this);
  }
  if (!plain.empty() && state_ == State::kOpen) {
    bytesIn_ += plain.size();
    protocol_->onData(plain.data(), plain.size());
  }
  if (st == tls::TlsSession::Status::kClosed && state_ != State::kClosed) onEof();
}

void Transport::fillWire() {
  if (!tls_ || !tls_->handshakeDone() || state_ == State::kClosed) return;
  // Encrypt at most this much per call so a large file is not turned into
  // ciphertext all at once.
  size_t budget = 256 * 1024;
  while (!out_.empty() && budget > 0) {
    OutputQueue::Segment& seg = out_.head();
    if (seg.isFile()) {
      size_t chunk = std::min<uint64_t>({seg.remaining, 64 * 1024, budget});
      std::string& buf = reactor_.context().fileScratch();
      buf.resize(chunk);
      ssize_t n = ::pread(seg.file->fd, buf.data(), chunk, off_t(seg.offset));
      if (n <= 0) {  // the file shrank: the promised length cannot be kept
        close();
        return;
      }
      tls_->writePlaintext(buf.data(), size_t(n));
      out_.consume(size_t(n));
      budget -= size_t(n);
    } else {
      std::string_view m = out_.headMemory();
      size_t n = std::min(m.size(), budget);
      tls_->writePlaintext(m.data(), n);
      out_.consume(n);
      budget -= n;
    }
  }
  if (tls_->hasOutput()) tls_->takeOutput(tlsOut_.buffer());
}

void Transport::onEof() {
  peerClosed_ = true;
  if (outbound_) {
    if (state_ != State::kClosed) protocol_->onEof();
    return;
  }
  switch (state_) {
    case State::kOpen:
      protocol_->onEof();  // the protocol decides: finish its answers, or close
      return;
    case State::kClosing:
      return;  // the last output is still going out; onDrained closes
    case State::kLingering:
      close();
      return;
    case State::kClosed:
      return;
  }
}

void Transport::onDrained() {
  lastProgressMs_ = reactor_.nowMs();
  State before = state_;
  if (before == State::kClosed || before == State::kLingering) return;
  // (Closing: the protocol may still be streaming an answer that ends with
  // the connection.)
  protocol_->onDrained();
  if (before != State::kClosing || state_ != State::kClosing) return;
  if (pendingBytes() > 0) {
    flush();  // the protocol wrote more: close once that is out
    return;
  }
  if (tls_ && !closeNotifySent_ && tls_->handshakeDone()) {
    closeNotifySent_ = true;
    tls_->shutdown();
    if (tls_->hasOutput()) {
      tls_->takeOutput(tlsOut_.buffer());
      reactor_.markDirty(this);
      return;  // linger once the alert is out
    }
  }
  if (peerClosed_) {
    // Nothing more can arrive: no need to linger.
    close();
    return;
  }
  state_ = State::kLingering;
  phaseStartMs_ = reactor_.nowMs();
  reactor_.shutdownWrite(this);
}

void Transport::onShutdown() {
  if (state_ == State::kOpen && out_.empty() && tlsOut_.empty() && protocol_->idle()) {
    // Between requests: closed now. A connection that has not sent its first
    // request yet was opened a moment ago to send one: it is given
    // kFreshGraceMs (onTick) before the same.
    if (!protocol_->fresh()) close();
    return;
  }
  if (state_ == State::kOpen) protocol_->onShutdown();
}

void Transport::onTick(uint64_t now) {
  const Timeouts& t = reactor_.config().timeouts;
  switch (state_) {
    case State::kClosed:
      return;
    case State::kLingering: {
      // While shutting down, wait less for the client to close its side.
      uint64_t limit = reactor_.draining() ? std::min<uint64_t>(t.lingerMs, 500) : t.lingerMs;
      if (now - phaseStartMs_ >= limit) close();
      return;
    }
    case State::kClosing:
      if (now - lastProgressMs_ >= t.sendMs) close();
      return;
    case State::kOpen:
      break;
  }
  if (reactor_.draining() && out_.empty() && tlsOut_.empty() && protocol_->idle() &&
      now - phaseStartMs_ >= kFreshGraceMs) {
    close();
    return;
  }
  if (tls_ && !tls_->handshakeDone()) {
    // The handshake shares the request-head deadline.
    if (now - phaseStartMs_ >= t.headerMs) close();
    return;
  }
  if (!out_.empty() || !tlsOut_.empty()) {
    // Waiting for the client to take our bytes.
    if (now - lastProgressMs_ >= t.sendMs) close();
    return;
  }
  protocol_->onTick(now);
}

void Transport::flush() {
  if (!out_.empty() || !tlsOut_.empty()) reactor_.markDirty(this);
}

void Transport::closeAfterOutput() {
  if (state_ != State::kOpen) return;
  state_ = State::kClosing;
  lastProgressMs_ = reactor_.nowMs();
  if (out_.empty() && tlsOut_.empty()) {
    onDrained();
  } else {
    flush();
  }
}

void Transport::closeSoon() {
  if (state_ != State::kOpen) return;
  flush();
  state_ = State::kClosing;
  peerClosed_ = true;  // no lingering: the answer is broken anyway
  lastProgressMs_ = reactor_.nowMs();
  if (out_.empty() && tlsOut_.empty()) onDrained();
}

void Transport::close() { reactor_.closeTransport(this); }

void Transport::setReadPaused(bool paused) {
  if (paused == readPaused_ || state_ == State::kClosed) return;
  // (Outbound and still connecting: the backend starts reading, or not,
  // once connected.)
  readPaused_ = paused;
  reactor_.setReading(this, !paused);
}

namespace {

std::string addressText(const sockaddr_storage& ss, int& port) {
  char host[INET6_ADDRSTRLEN] = "";
  port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  return host;
}

}  // namespace

std::string Transport::localAddress(int& port) const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  port = 0;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return addressText(ss, port);
}

bool Transport::peerOnThisMachine() {
  if (peerLocal_ < 0) {
    // This end's address tells: a connection to a loopback address comes
    // from this machine.
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    bool local = false;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_UNIX) {
        local = true;
      } else if (ss.ss_family == AF_INET) {
        local = (ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr) >> 24) == 127;
      } else if (ss.ss_family == AF_INET6) {
        const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
        local = IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
      }
    }
    peerLocal_ = local ? 1 : 0;
  }
  return peerLocal_ == 1;
}

const std::string& Transport::peerAddress() {
  if (peerPort_ < 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    peerPort_ = 0;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      peerAddress_ = addressText(ss, peerPort_);
    }
  }
  return peerAddress_;
}

}  // namespace kuai::server
