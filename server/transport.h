// Transport: one accepted TCP connection, owned by its Reactor, which alone
// creates, drives and destroys it, on the reactor's thread (a transport never
// changes thread). It holds the socket, the TLS session, the bytes still to be
// sent, and the close sequence: flush, close_notify, half-close, linger. What
// the bytes mean belongs to its Protocol (an HTTP/1.1 session, Http1Session;
// HTTP/2 plugs in as a second Protocol): the transport hands it plaintext and
// the protocol queues its output here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "server/output_queue.h"
#include "tls/tls.h"

namespace kuai::server {

class Reactor;

// What a transport's bytes mean. Lives as long as its transport.
class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual void onData(const char* data, size_t len) = 0;  // plaintext
  virtual void onEof() = 0;                                // the peer closed its side
  virtual void onDrained() = 0;                            // all output handed to the kernel
  virtual void onTick(uint64_t nowMs) = 0;                 // the protocol's own deadlines
  virtual void onShutdown() = 0;                           // a graceful stop began
  virtual bool idle() const = 0;                           // between requests, nothing queued
  virtual void onClose() = 0;                              // the transport is closed: drop what is in flight
  // A plain-text request reached a TLS port: answer it in clear text if the
  // protocol can (HTTP/1.1: 400), and close.
  virtual void failPlainText() = 0;
};

// 16-byte aligned: the backends tag pointers with their low bits.
class alignas(16) Transport final {
 public:
  enum class State : uint8_t {
    kOpen,       // reading and writing
    kClosing,    // last output queued: flush it, then linger
    kLingering,  // our side shut down; reading leftovers until EOF or timeout
    kClosed,     // waiting for the backend to release it
  };

  Transport(Reactor& reactor, int fd, std::unique_ptr<tls::TlsSession> tls);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  void setProtocol(std::unique_ptr<Protocol> p) { protocol_ = std::move(p); }
  Protocol* protocol() { return protocol_.get(); }
  Reactor& reactor() { return reactor_; }
  int fd() const { return fd_; }
  State state() const { return state_; }
  uint64_t id() const { return id_; }
  bool isTls() const { return tls_ != nullptr; }
  // Output as the protocol writes it (plaintext).
  OutputQueue& output() { return out_; }
  // What the backend sends: the output itself, or its TLS records.
  OutputQueue& wire() { return tls_ ? tlsOut_ : out_; }
  // Moves output into wire() (encrypting for TLS). Cheap no-op for plaintext.
  void fillWire();
  size_t pendingBytes() const { return out_.bytes() + tlsOut_.bytes(); }

  // Backend -> transport.
  void onData(const char* data, size_t len);
  void onEof();
  void onTick(uint64_t nowMs);
  void onDrained();
  // Graceful shutdown: idle transports close now, busy ones after their
  // protocol's current answer.
  void onShutdown();
  // The reactor closed it: nothing more is read or sent. (Queued output is
  // freed with the transport: an io_uring send may still be reading it.)
  void markClosed();

  // Protocol -> transport.
  // Output was queued: sent at the end of this reactor turn.
  void flush();
  // The last output is queued: send it, then close (half-close and linger).
  void closeAfterOutput();
  // Something broke: send what is queued, then close without lingering.
  void closeSoon();
  // Close at once.
  void close();
  // Stop or restart reading (the protocol's consumer is slow).
  void setReadPaused(bool paused);
  bool readPaused() const { return readPaused_; }
  // The client's address (filled on first use) and port.
  const std::string& peerAddress();
  int peerPort() {
    peerAddress();
    return peerPort_;
  }
  uint64_t nowMs() const;

  // Intrusive list of the reactor's transports.
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
  std::unique_ptr<Protocol> protocol_;
  OutputQueue out_;
  std::unique_ptr<tls::TlsSession> tls_;
  OutputQueue tlsOut_;       // TLS records waiting to be sent
  bool closeNotifySent_ = false;
  bool peerClosed_ = false;  // EOF (or close_notify) from the client
  bool readPaused_ = false;
  uint64_t id_ = 0;          // per reactor, for handlers
  std::string peerAddress_;  // filled on first use (getpeername)
  int peerPort_ = -1;
  uint64_t phaseStartMs_ = 0;     // when the handshake / lingering began
  uint64_t lastProgressMs_ = 0;   // the last byte the client took
};

}  // namespace kuai::server
