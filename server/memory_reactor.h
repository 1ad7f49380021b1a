// MemoryReactor: a reactor whose backend is memory, for unit tests and the
// request-pipeline fuzzer: no sockets, no kernel, no threads. A test opens
// connections on a listener (the site's router, or a handler of its own),
// hands them bytes as a client would send them, reads back what kuai sent,
// closes the client's side, holds the client's window shut to make kuai wait,
// and moves the clock to reach deadlines. Everything else (transports, the
// HTTP/1.1 session, routing, handlers, the close sequence) is the real code.
// One thread, the caller's.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "server/reactor.h"

namespace kuai::server {

class MemoryReactor final : public Reactor {
 public:
  explicit MemoryReactor(const ServerConfig& config);
  ~MemoryReactor() override;

  bool init(std::string&) override { return true; }
  void run() override {}
  const char* backendName() const override { return "memory"; }

  // A listener whose connections the handler answers (null: the router).
  Listener* listen(Handler* handler = nullptr);
  // A client connects to `l` (the first listener, made on first use, by
  // default) and kuai accepts. Returns the connection's id.
  uint64_t accept(Listener* l = nullptr);
  // The client sends bytes; the reactor's turn runs to its end.
  void send(uint64_t conn, std::string_view bytes);
  // The client closes its sending side (EOF).
  void shutdown(uint64_t conn);
  // The client's receive window: at most `bytes` more are taken (SIZE_MAX:
  // all); taking stops until grant() opens it again.
  void setWindow(uint64_t conn, size_t bytes);
  void grant(uint64_t conn, size_t bytes);
  // Everything received so far, and taking it (the next call returns what
  // came since).
  const std::string& received(uint64_t conn) const;
  std::string take(uint64_t conn);
  // kuai closed the connection (or half-closed its side: writeShut).
  bool closed(uint64_t conn) const;
  bool writeShut(uint64_t conn) const;
  bool reading(uint64_t conn) const;
  // Moves the clock on and runs the reactor's tick (deadlines).
  void advance(uint64_t ms);
  // Runs the end of a reactor turn (output, deferred work, frees), as after
  // any event: for handlers that act outside send() (timers of a test).
  void turn();
  // A graceful stop, as on SIGTERM.
  void stop() { send(StopMessage{}); }
  using Reactor::send;
  size_t openConnections() const;

 protected:
  void flush(Transport* c) override;
  void release(Transport* c) override;
  void setReading(Transport* c, bool on) override;
  void armListener(Listener* l) override { l->armed = true; }
  void disarmListener(Listener* l) override { l->armed = false; }
  void startConnect(Transport* c) override;
  void shutdownWrite(Transport* c) override;

 private:
  struct Peer {
    Transport* transport = nullptr;  // null once kuai let go of it
    std::string received;
    size_t window = SIZE_MAX;
    std::string inbox;  // sent by the client, not yet read by kuai
    bool eof = false;    // the client closed its side
    bool eofSent = false;
    bool readPaused = false;
    bool writeShut = false;
    bool closed = false;
  };
  // Hands one connection's waiting bytes (or EOF) to kuai; false if none.
  bool deliver();
  Peer* peer(uint64_t conn);
  Peer* peerOf(Transport* c);  // null for outbound transports
  const Peer* peer(uint64_t conn) const;

  std::map<uint64_t, Peer> peers_;
  std::vector<Transport*> graveyard_;
};

}  // namespace kuai::server
