// Server: the reactor threads of one kuai process, and their control from the
// thread that started them (stop, reload, tasks posted to one reactor). Two
// owners drive it: runServer() in the kuai binary (signals taken with sigwait)
// and the scripting addon inside node (signals through node's event loop).
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/config.h"
#include "server/loop_driver.h"
#include "server/upgrade.h"

namespace kuai::server {

class Reactor;

// Runs on each reactor thread once its backend is up, before it serves: returns
// the thread's event loop (a Node environment) or null with `err` set.
using ThreadStart = std::function<std::unique_ptr<LoopDriver>(Reactor&, std::string& err)>;

class Server {
 public:
  // `config` as resolveSite() left it (site_config.h).
  Server(ServerConfig config, ThreadStart threadStart = {});
  ~Server();  // stops and joins what is still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the listeners and starts the reactor threads; returns once every one
  // has set up its backend (and its environment, for scripts). False with
  // `err` (one line for people) when the server cannot run; nothing is left
  // running then.
  bool start(std::string& err);
  // The "kuai: serving ..." line(s) on stdout (not in script mode: scripts
  // print their own).
  void printBanner() const;

  // Thread-safe: graceful shutdown (in-flight requests finish within
  // --shutdown-timeout).
  void stop();
  // SIGHUP: the site again from its sources (the config file, or the
  // certificates of `kuai serve`). Main thread.
  void reload();
  // SIGUSR2 (main thread): starts the executable this one was started from on
  // the site's listening sockets (upgrade.h). The outcome is learnt by
  // pollUpgrade() once upgradeFd() is readable (or on a timer).
  void startUpgrade();
  int upgradeFd() const { return upgrade_.readyFd(); }
  // True once the new process serves: this one then drains (as on SIGTERM).
  bool pollUpgrade();
  // A stop while the new process starts: it is stopped too.
  void abandonUpgrade();
  // Thread-safe: runs fn on reactor `index`'s thread at its next turn.
  void post(int index, std::function<void()> fn);
  int threads() const { return int(reactors_.size()); }
  // Reactor threads still running.
  int running() const { return running_.load(); }
  // Called on the last reactor thread to finish (any thread): wake the owner.
  void setOnFinished(std::function<void()> fn) { onFinished_ = std::move(fn); }
  // Waits for every reactor thread.
  void join();
  const ServerConfig& config() const { return config_; }

 private:
  void threadMain(size_t i, const std::vector<int>& cpus, std::promise<std::string>& ready);

  ServerConfig config_;
  ThreadStart threadStart_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::vector<std::thread> threads_;
  std::atomic<int> running_{0};
  std::function<void()> onFinished_;
  const char* backend_ = "";
  std::vector<ListenSpec> siteListen_;  // a config file's listeners, as bound
  std::vector<int> handoverFds_;        // each listening socket once, for an upgrade
  BinaryUpgrade upgrade_;
};

// The kuai binary's server: runs until SIGTERM/SIGINT (drain; a second one
// exits at once), SIGHUP reloads, SIGUSR2 hands over to a new binary. Returns the process exit code; errors are
// printed as one "kuai: ..." line.
int runServer(ServerConfig config);

}  // namespace kuai::server
