// Mailbox: the one way into a reactor from other threads. Messages are typed:
// a graceful stop, a new site (a reload: routes, certificates, access log),
// or a task to run on the reactor's thread (control only: a script
// environment's reload; never per request). Senders append under a short
// lock and write the reactor's eventfd; the reactor takes the whole batch on
// its thread at its next turn. (The metrics endpoint needs no message: it
// reads every reactor's relaxed counters, see metrics.h.)
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <variant>
#include <vector>

#include "server/metrics.h"
#include "server/site.h"
#include "tls/tls.h"

namespace kuai::server {

struct StopMessage {};

struct SiteMessage {
  std::shared_ptr<const Site> site;
  // Not empty: the certificates of the initial listeners, in their order.
  std::vector<std::shared_ptr<tls::TlsContext>> tls;
  std::shared_ptr<AccessLog> log;  // null: no access log
};

struct TaskMessage {
  std::function<void()> fn;
};

using ReactorMessage = std::variant<StopMessage, SiteMessage, TaskMessage>;

class Mailbox {
 public:
  Mailbox();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // The eventfd the reactor's backend waits on.
  int fd() const { return fd_; }
  // Any thread.
  void send(ReactorMessage message);
  // The reactor's thread: whether messages wait, and all of them, in order.
  bool pending() const { return pending_.load(std::memory_order_acquire); }
  std::vector<ReactorMessage> take();

 private:
  int fd_ = -1;
  std::mutex mutex_;
  std::vector<ReactorMessage> queue_;  // guarded by mutex_
  std::atomic<bool> pending_{false};
};

}  // namespace kuai::server
