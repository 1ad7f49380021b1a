// Zero-downtime upgrade of the binary, started by SIGUSR2 (as nginx's): the
// running kuai starts the executable it was started from (a new build or
// package put in its place) with the same arguments and working directory,
// handing it the listening sockets as systemd's socket activation would
// ($LISTEN_FDS / $LISTEN_PID, fds 3..). The new process serves from the same
// sockets (so no connection is refused or dropped: the kernel's queue never
// lacks a reader) and reports on a pipe once every reactor serves; only then
// does the old one stop accepting and drain. If the new one fails to start
// (a bad config, a broken binary), the old one says why and goes on serving.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kuai::server {

// The executable and arguments a SIGUSR2 starts. main() records them before
// anything else runs (the path of this executable as it was when started, or
// $KUAI_EXE when set: the path stays valid when a package replaces the file).
void setUpgradeCommand(std::vector<std::string> args);
const std::string& upgradeExecutable();

class BinaryUpgrade {
 public:
  BinaryUpgrade() = default;
  ~BinaryUpgrade();
  BinaryUpgrade(const BinaryUpgrade&) = delete;
  BinaryUpgrade& operator=(const BinaryUpgrade&) = delete;

  // Starts the new process with `listenFds` (each a distinct listening
  // socket). False with `err` when it cannot be started at all.
  bool start(const std::vector<int>& listenFds, std::string& err);
  bool inProgress() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The pipe's reading end: readable once the new process reports or ends.
  int readyFd() const { return readFd_; }

  enum class Outcome { kPending, kReady, kFailed };
  // Non-blocking. kReady: the new process serves (it is on its own from now
  // on). kFailed: it ended or gave up without serving; `why` says how.
  Outcome poll(std::string& why);
  // A stop while the new process is still starting: it is stopped too
  // (SIGTERM), so that the service ends rather than carrying on in it.
  void abandon();

 private:
  void reset();
  pid_t pid_ = -1;
  int readFd_ = -1;
};

// In the new process: true when a SIGUSR2 upgrade started this process (the
// old one then tells systemd about the new main process itself).
bool startedByUpgrade();
// In the new process, once every reactor serves: tells the old one to drain.
void reportUpgradeReady();

}  // namespace kuai::server
