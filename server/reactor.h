// Reactor: one per thread, shares nothing with the others; it owns that
// thread's I/O and nothing else. Its listening sockets (SO_REUSEPORT), its
// transports (accepted and outbound), the clock and Date line, deadlines
// (tick), the graceful drain, and an I/O backend: io_uring (UringReactor) or
// epoll (EpollReactor) behind this one interface. The thread's services
// (router, accounting, app handlers, the JS client's pools) are its
// ThreadContext's. Other threads reach it only through its Mailbox (send()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/config.h"
#include "server/exchange.h"
#include "server/loop_driver.h"
#include "server/mailbox.h"
#include "server/thread_context.h"
#include "server/transport.h"

namespace kuai::server {


// A listening socket owned by one reactor. handler == null: the Router answers.
struct Listener {
  int fd = -1;
  Handler* handler = nullptr;
  std::shared_ptr<tls::TlsContext> tls;  // a script's https server; null: plain
  bool armed = false;  // backend: an accept is in flight / fd is in the poll set
  // Clear text: a client opening with the HTTP/2 preface speaks h2c (prior
  // knowledge). (TLS listeners choose HTTP/2 by ALPN: see tls::TlsConfig.)
  bool h2c = false;
  // False: HTTP/2 only (a script's http2 server without allowHTTP1): every
  // connection is handed to HTTP/2, whose preface check refuses the others.
  bool http1 = true;
  // Another process holds this socket too (systemd's socket activation, a
  // SIGUSR2 upgrade): closing it here must leave it listening.
  bool shared = false;
  // Closed but kept open until its cancelled accept completes, then the
  // queue is swept once (io_uring: see UringReactor::disarmListener).
  bool sweep = false;
  // The listener's own request deadlines, for the connections accepted from
  // now on (a script's server.headersTimeout / requestTimeout): the head
  // within headDeadlineMs and the whole request within requestDeadlineMs of
  // its first byte (0: none), pauses inside a body not limited. Unless
  // `deadlines`, the reactor's --header-timeout and --body-timeout apply.
  uint32_t headDeadlineMs = 0;
  uint32_t requestDeadlineMs = 0;
  bool deadlines = false;
  // False: HTTP/1.1 requests without Host are taken (requireHostHeader).
  bool requireHost = true;
};

class Reactor {
 public:
  Reactor(int index, const ServerConfig& config);
  virtual ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Sets up the backend; false with `err` filled when it cannot run.
  virtual bool init(std::string& err) = 0;
  // The thread body: returns after a requested stop, once every connection is
  // gone or the shutdown deadline has passed.
  virtual void run() = 0;
  virtual const char* backendName() const = 0;
  // Any thread: a message for this reactor (stop, reload, a task), acted on
  // at its next turn. The only cross-thread call.
  void send(ReactorMessage message) { mailbox_.send(std::move(message)); }

  // This thread only: listen on another socket (a script's server.listen()).
  Listener* addListener(int fd, Handler* handler, std::shared_ptr<tls::TlsContext> tls = nullptr);
  // This thread only: stop accepting on it and close it (server.close()).
  void removeListener(Listener* l);
  // Before init(): one more listening socket (a config file's listeners).
  // tls: its certificates; null: plain.
  // h2c: clear-text clients may speak HTTP/2 with prior knowledge.
  void addInitialListener(int fd, std::shared_ptr<tls::TlsContext> tls, bool h2c = false, bool shared = false);
  // This thread only: an event loop to drive (the thread's Node environment).
  void setLoopDriver(LoopDriver* loop) { loop_ = loop; }
  int index() const { return index_; }
  // No listener, no connection and no live event loop: nothing can happen.
  bool quiescent() const;

  // For transports, protocols and handlers on this thread.
  const ServerConfig& config() const { return config_; }
  ThreadContext& context() { return *context_; }
  std::string_view dateLine() const { return std::string_view(date_, kDateLineLen); }
  uint64_t nowMs() const { return nowMs_; }
  time_t nowSeconds() const { return nowSec_; }
  bool draining() const { return draining_; }
  // The transport has output to send: flushed at the end of this wake-up
  // (or sooner, once the wake-up's batch has run kBatchFlushMicros).
  void markDirty(Transport* c);
  // Stop reading and writing; the backend frees it when no I/O is in flight.
  void closeTransport(Transport* c);
  // Half-close after the last response (then linger).
  virtual void shutdownWrite(Transport* c);
  // Stop or restart reading from a transport (a handler not taking its body).
  virtual void setReading(Transport* c, bool on) = 0;
  // An outbound connection (a proxy's upstream, a health check): starts a
  // non-blocking connect to `addr` and returns the transport, or null with
  // `err` (an errno) when no socket can be made. `owner` hears the outcome
  // (onConnect) and everything after, until it closes the transport
  // (Transport::close).
  Transport* connect(const sockaddr* addr, socklen_t len, Protocol* owner, int& err);
  // Periodic work (proxy timeouts, idle pools), run from the reactor's tick.
  class Ticker {
   public:
    virtual ~Ticker() = default;
    virtual void onTick(uint64_t nowMs) = 0;
  };
  void addTicker(Ticker* t) { tickers_.push_back(t); }
  void removeTicker(Ticker* t) { std::erase(tickers_, t); }
  // Runs fn(arg) once this wake-up's work is done (deferred frees of objects
  // that callbacks further up the stack may still be using).
  void later(void (*fn)(void*), void* arg) { later_.push_back({fn, arg}); }
  // The accepted connections with these ids, once the current work returns
  // (later()): closed at once (`now`: what is queued goes out first), or
  // stopped gracefully (closed if between requests; HTTP/2 sends GOAWAY;
  // an HTTP/1 request in flight goes on).
  // A request its handler took over after a parse error (Handler::onClientError):
  // `bytes` go out as they are, then the connection stays (kKeep), closes
  // once they are sent (kEnd) or closes without waiting for the client
  // (kDestroy). Done once the current call returns, in call order.
  enum class RawThen : uint8_t { kKeep, kEnd, kDestroy };
  void answerClientError(uint64_t id, std::string bytes, RawThen then);
  void closeConnections(std::vector<uint64_t> ids, bool now);
  // A connection's bytes so far (Transport::bytesRead/bytesWritten); false
  // when this reactor has no open connection with that id. A walk over the
  // connections: for what a script asks between its requests.
  bool connectionBytes(uint64_t id, uint64_t& read, uint64_t& written) const;

 protected:
  // Backend hooks.
  virtual void flush(Transport* c) = 0;          // start sending c's output
  virtual void release(Transport* c) = 0;        // c is closed: free when idle
  virtual void armListener(Listener* l) = 0;
  virtual void disarmListener(Listener* l) = 0;  // also closes its socket
  virtual void startConnect(Transport* c) = 0;   // outbound: c->fd() is non-blocking
  // From the backend's destructor, once its I/O is stopped: connections, then
  // handlers (which close their sockets) go while the backend still exists.
  void teardown();
  void stopAccepting();

  Transport* addConnection(int fd, Listener* from);
  void destroyTransport(Transport* c);  // unlinks and deletes (accepted or outbound)
  void flushDirty();
  // A wake-up handles its whole batch of completions (events) before the
  // output they made goes out: one submit for every connection's writes. A
  // batch that runs long (many HTTP/2 streams or TLS records per connection)
  // would hold its first connections' answers back until the last is
  // handled, so once it has run this long, the output made so far is sent
  // and the batch goes on.
  static constexpr uint64_t kBatchFlushMicros = 100;
  // For a backend's batch loop, after each completion (event), `handled` so
  // far: true once the batch has run kBatchFlushMicros with output waiting,
  // when the caller sends what is dirty. The clock is read every fourth
  // completion, from the fourth on (`since` starts at 0), so a short batch
  // reads none.
  bool batchFlushDue(unsigned handled, uint64_t& since) {
    return (handled & 3) == 0 && !dirty_.empty() && batchRanLong(since);
  }
  void updateClock();
  // Messages, timeouts, Date refresh, shutdown progress. Call about every
  // kTickMs, and at least once per wake-up.
  void tick();
  void beginDrain();
  bool finished() const { return draining_ && live_ == 0 && !acceptsInFlight(); }
  // A closed listener whose accept the backend has not finished cancelling
  // (connections it accepts meanwhile are served).
  bool acceptsInFlight() const {
    for (const auto& l : retired_) {
      if (l->armed) return true;
    }
    return false;
  }
  void runLater();  // the later() calls, once a wake-up's work is done
  // Output to flush or later() calls to run.
  bool hasDeferredWork() const { return !dirty_.empty() || !later_.empty(); }
  int wakeFd() const { return mailbox_.fd(); }

  static constexpr uint64_t kTickMs = 250;
  static constexpr size_t kDateLineLen = 37;  // "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

  std::vector<std::unique_ptr<Listener>> listeners_;
  LoopDriver* loop_ = nullptr;
  bool draining_ = false;
  uint64_t nowMs_ = 0;

 private:
  // Takes the mailbox's messages: a site is applied at once, a stop and tasks
  // wait for tick() (so that accepting a connection never runs them).
  void readMailbox();
  void applySite(SiteMessage& m);

  int index_;
  const ServerConfig& config_;
  Mailbox mailbox_;
  std::unique_ptr<ThreadContext> context_;
  std::vector<std::unique_ptr<Listener>> retired_;  // closed; freed with the reactor
  size_t initialListeners_ = 0;
  bool stopRequested_ = false;
  std::vector<std::function<void()>> tasks_;  // from the mailbox, for tick()
  std::vector<Transport*> dirty_;
  bool batchRanLong(uint64_t& since);
  std::vector<Ticker*> tickers_;
  // Wake-ups since the last periodic tick, and how many ticks in a row found
  // the reactor quiet (see settleWhenQuiet()).
  uint32_t wakeups_ = 0;
  uint32_t quietTicks_ = 0;
  bool busySinceSettled_ = false;
  uint64_t settledMs_ = 0;
  void settleWhenQuiet();
  struct Later {
    void (*fn)(void*);
    void* arg;
  };
  std::vector<Later> later_;
  Transport* head_ = nullptr;     // accepted transports
  size_t live_ = 0;
  Transport* outHead_ = nullptr;  // outbound transports
  size_t outbound_ = 0;
  bool tearingDown_ = false;
  uint64_t drainDeadlineMs_ = 0;
  uint64_t lastTickMs_ = 0;
  time_t nowSec_ = 0;
  char date_[kDateLineLen + 1] = {};
};

// Creates the reactor for the chosen backend (kAuto is resolved by the caller).
std::unique_ptr<Reactor> makeReactor(IoBackend io, int index, const ServerConfig& config);
// Whether io_uring with the features kuai uses works here; `why` says otherwise.
bool uringAvailable(std::string& why);

}  // namespace kuai::server
