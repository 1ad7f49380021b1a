// Transport: one TCP connection driven by its reactor's backend (io_uring or
// epoll): an accepted client connection, or an outbound one (a proxy's or the
// JS client's upstream, a health check). The backend reads into it, sends its
// output (memory and file segments, sendfile where it can) and reports what
// happened; what the bytes mean belongs to its Protocol: an HTTP/1.1 session
// (Http1Session) for accepted connections, the upstream's response reader for
// outbound ones.
//
// Owned by its Reactor, which alone creates and frees it, on the reactor's
// thread (a transport never changes thread). An accepted transport owns its
// protocol, its TLS session and the close sequence (flush, close_notify,
// half-close, linger) with the send / handshake / linger deadlines. An
// outbound one is used by its protocol's owner, which closes it when done:
// close() stops every callback at once, and the backend frees the transport
// once no operation is in flight.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "server/output_queue.h"
#include "tls/tls.h"

namespace kuai::server {

class Reactor;

// What a transport's bytes mean; the transport's callbacks.
class Protocol {
 public:
  virtual ~Protocol() = default;
  // Outbound: the connect finished: 0, or a negative errno (-ECONNREFUSED).
  virtual void onConnect(int err) {}
  virtual void onData(const char* data, size_t len) = 0;  // plaintext
  virtual void onEof() = 0;                                // the peer closed its side
  // Outbound: the connection failed (a negative errno): close it. (An
  // accepted transport closes itself; its protocol hears onClose.)
  virtual void onError(int err) {}
  virtual void onDrained() = 0;  // all output handed to the kernel
  // Accepted connections only.
  virtual void onTick(uint64_t nowMs) {}  // the protocol's own deadlines
  virtual void onShutdown() {}            // a graceful stop began
  virtual bool idle() const { return true; }  // between requests, nothing in flight
  // No request has begun on the connection yet (its first may be on the way).
  virtual bool fresh() const { return false; }
  virtual void onClose() {}               // the transport is closed: drop what is in flight
  // A plain-text request reached a TLS port: answer it in clear text if the
  // protocol can (HTTP/1.1: 400); the transport closes after it.
  virtual void failPlainText() {}
};

// 16-byte aligned: the backends tag pointers with their low bits.
class alignas(16) Transport final {
 public:
  // While draining, how long a connection that has sent no request yet may
  // wait for its first.
  static constexpr uint64_t kFreshGraceMs = 1000;
  enum class State : uint8_t {
    kOpen,       // reading and writing
    kClosing,    // last output queued: flush it, then linger
    kLingering,  // our side shut down; reading leftovers until EOF or timeout
    kClosed,     // waiting for the backend to release it
  };

  // An accepted connection.
  Transport(Reactor& reactor, int fd, std::unique_ptr<tls::TlsSession> tls);
  // An outbound one, being connected to `addr` (the backend connects it).
  Transport(Reactor& reactor, int fd, const sockaddr* addr, socklen_t len, Protocol* owner);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  void setProtocol(std::unique_ptr<Protocol> p) {
    owned_ = std::move(p);
    protocol_ = owned_.get();
  }
  // From inside the current protocol's callback (an HTTP/1.1 session handing
  // the connection to HTTP/2): the old one is kept until the transport goes,
  // so that the callback can return through it.
  void replaceProtocol(std::unique_ptr<Protocol> p) {
    retired_ = std::move(owned_);
    setProtocol(std::move(p));
  }
  Protocol* protocol() { return protocol_; }
  // The protocol the TLS handshake chose by ALPN ("h2"); empty without one.
  std::string_view alpn() const { return tls_ ? tls_->alpnSelected() : std::string_view(); }
  Reactor& reactor() { return reactor_; }
  int fd() const { return fd_; }
  State state() const { return state_; }
  bool closed() const { return state_ == State::kClosed; }
  bool outbound() const { return outbound_; }
  bool connected() const { return connected_; }
  uint64_t id() const { return id_; }
  bool isTls() const { return tls_ != nullptr; }
  const tls::TlsSession* tls() const { return tls_.get(); }
  // Output as the protocol writes it (plaintext).
  OutputQueue& output() { return out_; }
  // What the backend sends: the output itself, or its TLS records.
  OutputQueue& wire() { return tls_ ? tlsOut_ : out_; }
  // Moves output into wire() (encrypting for TLS). Cheap no-op for plaintext.
  void fillWire();
  size_t pendingBytes() const { return out_.bytes() + tlsOut_.bytes(); }
  // The protocol's bytes (plaintext under TLS): read from the peer so far,
  // and written (sent, or queued to send), as a Node socket's bytesRead and
  // bytesWritten count them.
  uint64_t bytesRead() const { return bytesIn_; }
  uint64_t bytesWritten() const { return out_.consumed() + out_.bytes(); }
  // Outbound: where it connects (stays valid while an io_uring connect reads it).
  const sockaddr* peerSockaddr() const { return reinterpret_cast<const sockaddr*>(addr_.get()); }
  socklen_t peerSockaddrLen() const { return addrLen_; }

  // Backend -> transport.
  void onConnect(int err);  // outbound
  void onData(const char* data, size_t len);
  void onEof();
  void onError(int err);  // a failed read or write (negative errno)
  void onTick(uint64_t nowMs);
  void onDrained();
  // Graceful shutdown: idle transports close now, busy ones after their
  // protocol's current answer.
  void onShutdown();
  // The reactor closed it: nothing more is read or sent. (Queued output is
  // freed with the transport: an io_uring send may still be reading it.)
  void markClosed();

  // Protocol (or owner) -> transport.
  // Output was queued: sent at the end of this reactor turn.
  void flush();
  // The last output is queued: send it, then close (half-close and linger).
  void closeAfterOutput();
  // Something broke: send what is queued, then close without lingering.
  void closeSoon();
  // Close at once. For an outbound transport: no callback after this.
  void close();
  // Stop or restart reading (the protocol's consumer is slow).
  void setReadPaused(bool paused);
  bool readPaused() const { return readPaused_; }
  // The peer's address (filled on first use) and port.
  const std::string& peerAddress();
  // This end's address and port (getsockname, each call): empty / 0 when
  // the socket has none.
  std::string localAddress(int& port) const;
  int peerPort() {
    peerAddress();
    return peerPort_;
  }
  // The peer is on this machine (a loopback or Unix-socket connection), so
  // its work receiving is this machine's too (see file_send.h). Asked once.
  bool peerOnThisMachine();
  uint64_t nowMs() const;

  // Intrusive list of the reactor's transports (accepted and outbound apart).
  Transport* prev = nullptr;
  Transport* next = nullptr;
  // Backend bookkeeping (io_uring: operations in flight; epoll: interest set).
  uint8_t backendFlags = 0;
  uint8_t opsInFlight = 0;
  bool dirty = false;  // on the reactor's flush list

 private:
  void onTlsData(const char* data, size_t len);

  Reactor& reactor_;
  int fd_;
  State state_ = State::kOpen;
  bool outbound_ = false;
  bool connected_ = true;    // outbound: false until the connect succeeds
  Protocol* protocol_ = nullptr;
  std::unique_ptr<Protocol> owned_;  // an accepted transport's protocol
  std::unique_ptr<Protocol> retired_;  // the one it replaced
  OutputQueue out_;
  std::unique_ptr<tls::TlsSession> tls_;
  OutputQueue tlsOut_;       // TLS records waiting to be sent
  bool closeNotifySent_ = false;
  bool peerClosed_ = false;  // EOF (or close_notify) from the client
  bool readPaused_ = false;
  uint64_t id_ = 0;          // per reactor, for handlers
  uint64_t bytesIn_ = 0;     // plaintext handed to the protocol
  std::string peerAddress_;  // filled on first use (getpeername)
  int peerPort_ = -1;
  int8_t peerLocal_ = -1;    // peerOnThisMachine(), -1 until asked
  uint64_t phaseStartMs_ = 0;     // when the handshake / lingering began
  uint64_t lastProgressMs_ = 0;   // the last byte the client took
  // Outbound: the peer (accepted transports, the many, carry none).
  std::unique_ptr<sockaddr_storage> addr_;
  socklen_t addrLen_ = 0;
};

}  // namespace kuai::server
