// ThreadScripting: the scripting layer as one reactor thread sees it, the
// LoopDriver its reactor drives: the thread's current Environment and the
// ServerSlots its listeners and app routes hand requests to. It replaces the
// environment after an uncaught exception, a handler over its CPU budget or a
// heap near its limit (at once: its open requests get 503), or on --watch
// (gracefully: its open requests finish first, new ones wait in the slots),
// while the other threads keep serving. One per reactor thread, created and
// used on that thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "scripting/environment.h"
#include "server/loop_driver.h"

namespace kuai::scripting {

class ServerSlot;

class ThreadScripting final : public server::LoopDriver {
 public:
  ThreadScripting(server::Reactor& reactor, const ScriptOptions& options);
  ~ThreadScripting() override;

  bool start(std::string& err);
  int fd() const override { return env_->fd(); }
  int timeoutMs() const override;
  void runOnce() override;
  // With --watch a thread waits for the next change even with nothing to run.
  bool alive() const override { return replacing_ || restart_ || options_.watch || env_->alive(); }
  void runBatch(void (*work)(void*), void* arg) override;
  void onQuiet() override;

  // Replaces the environment at the next turn, at once.
  void requestRestart(std::string why);
  // The environment could not start after a replacement: at the next turn it
  // stops; its routes answer 503 until the next reload.
  void stopEnvironment();
  // Replaces it once its open requests are answered (or after
  // kGracefulDeadlineMs); `done` runs on this thread afterwards.
  void requestReload(std::string why, std::function<void()> done);

  JsServer* addServer(std::unique_ptr<JsServer> s);
  // The slot that `key` names (host:port#n or app:PATH), made on first use; it
  // keeps its listener open while environments come and go.
  ServerSlot* slot(const std::string& key);
  // The thread's keep-alive pools for the scripts' outbound requests: they
  // outlive a replaced environment (made on first use).
  server::Agent& agent();
  server::Reactor& reactor() { return reactor_; }
  Environment* environment() { return env_.get(); }

  static constexpr uint64_t kGracefulDeadlineMs = 10'000;

 private:
  void replace();
  void closeUnclaimedSlots();

  server::Reactor& reactor_;
  const ScriptOptions& options_;
  std::unique_ptr<Environment> env_;
  std::vector<std::unique_ptr<JsServer>> servers_;
  std::map<std::string, std::unique_ptr<ServerSlot>> slots_;
  bool restart_ = false;    // replace at the next turn
  bool stop_ = false;       // stop the environment at the next turn
  bool replacing_ = false;  // waiting for the open requests before replacing
  uint64_t replaceDeadlineMs_ = 0;
  std::string why_;
  std::vector<std::function<void()>> onReplaced_;
};

// Runs on each reactor thread: creates its environment and runs the main
// script's first turn (thread 0 first, the others once it has started). Null
// with `err` (for people) when the script cannot start.
std::unique_ptr<server::LoopDriver> startEnvironment(server::Reactor& reactor, const ScriptOptions& options,
                                                     std::string& err);
// Thread `index`'s scripting (null before it started or after it stopped);
// only to post work to that thread.
ThreadScripting* threadScripting(int index);

}  // namespace kuai::scripting
