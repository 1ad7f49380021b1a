#include "server/upgrade.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "server/node_runtime.h"

extern char** environ;

namespace kuai::server {

namespace {

constexpr const char* kExeVar = "KUAI_EXE";
constexpr const char* kChannelVar = "KUAI_UPGRADE_FD";

std::string gExe;
std::vector<std::string> gArgs;

// The new process's end of the readiness pipe: -2 not looked at yet, -1 none.
int gChannel = -2;

int channel() {
  if (gChannel != -2) return gChannel;
  gChannel = -1;
  if (const char* v = std::getenv(kChannelVar); v && *v) {
    char* end = nullptr;
    long fd = std::strtol(v, &end, 10);
    if (*end == '\0' && fd > 2 && fd < INT_MAX && ::fcntl(int(fd), F_GETFD) >= 0) gChannel = int(fd);
  }
  return gChannel;
}

bool startsWith(const char* s, std::string_view prefix) { return std::strncmp(s, prefix.data(), prefix.size()) == 0; }

}  // namespace

void setUpgradeCommand(std::vector<std::string> args) {
  gArgs = std::move(args);
  if (const char* v = std::getenv(kExeVar); v && *v) {
    gExe = v;
  } else {
    gExe = executablePath();
    // For the scripting runtime that this process may become (node with the
    // addon), which starts the same command on SIGUSR2.
    if (!gExe.empty()) ::setenv(kExeVar, gExe.c_str(), 1);
  }
}

const std::string& upgradeExecutable() { return gExe; }

BinaryUpgrade::~BinaryUpgrade() {
  if (readFd_ >= 0) ::close(readFd_);
}

void BinaryUpgrade::reset() {
  if (readFd_ >= 0) ::close(readFd_);
  readFd_ = -1;
  pid_ = -1;
}

bool BinaryUpgrade::start(const std::vector<int>& listenFds, std::string& err) {
  if (inProgress()) {
    err = "an upgrade is already under way (new process " + std::to_string(pid_) + ")";
    return false;
  }
  if (gExe.empty()) {
    err = "the executable to start is not known";
    return false;
  }
  if (::access(gExe.c_str(), X_OK) != 0) {
    err = gExe + ": " + std::strerror(errno);
    return false;
  }
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    err = std::string("pipe: ") + std::strerror(errno);
    return false;
  }

  // Everything the child needs is built now: between fork and exec only
  // async-signal-safe calls are allowed (other threads may hold malloc's locks).
  const int n = int(listenFds.size());
  const int readyFd = 3 + n;
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (startsWith(*e, "LISTEN_PID=") || startsWith(*e, "LISTEN_FDS=") || startsWith(*e, "LISTEN_FDNAMES=") ||
        startsWith(*e, "KUAI_UPGRADE_FD=")) {
      continue;
    }
    env.emplace_back(*e);
  }
  env.push_back("LISTEN_FDS=" + std::to_string(n));
  env.push_back(std::string(kChannelVar) + "=" + std::to_string(readyFd));
  env.push_back("LISTEN_PID=" + std::string(20, '\0'));  // the child writes its pid in
  char* pidSlot = env.back().data() + std::strlen("LISTEN_PID=");
  std::vector<char*> envp;
  for (std::string& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argStrings{gExe};
  argStrings.insert(argStrings.end(), gArgs.begin(), gArgs.end());
  std::vector<char*> argv;
  for (std::string& s : argStrings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<int> moved(size_t(n) + 1, -1);
  const char* exe = gExe.c_str();

  pid_t pid = ::fork();
  if (pid < 0) {
    err = std::string("fork: ") + std::strerror(errno);
    ::close(pipeFds[0]);
    ::close(pipeFds[1]);
    return false;
  }
  if (pid == 0) {
    // First above the target range, so that placing them at 3.. cannot
    // overwrite one not yet placed; dup2 leaves the copies open across exec.
    for (int i = 0; i < n; ++i) moved[size_t(i)] = ::fcntl(listenFds[size_t(i)], F_DUPFD_CLOEXEC, readyFd + 1);
    moved[size_t(n)] = ::fcntl(pipeFds[1], F_DUPFD_CLOEXEC, readyFd + 1);
    for (int i = 0; i <= n; ++i) {
      if (moved[size_t(i)] < 0 || ::dup2(moved[size_t(i)], 3 + i) < 0) ::_exit(126);
    }
    // The signal mask and ignored signals survive exec: start clean.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    char digits[20];
    int len = 0;
    for (pid_t p = ::getpid(); p > 0 && len < 20; p /= 10) digits[len++] = char('0' + p % 10);
    for (int i = 0; i < len; ++i) pidSlot[i] = digits[len - 1 - i];
    pidSlot[len] = '\0';
    ::execve(exe, argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(pipeFds[1]);
  ::fcntl(pipeFds[0], F_SETFL, ::fcntl(pipeFds[0], F_GETFL) | O_NONBLOCK);
  readFd_ = pipeFds[0];
  pid_ = pid;
  return true;
}

BinaryUpgrade::Outcome BinaryUpgrade::poll(std::string& why) {
  if (!inProgress()) return Outcome::kPending;
  char c = 0;
  ssize_t r = ::read(readFd_, &c, 1);
  if (r == 1) {
    reset();
    return Outcome::kReady;
  }
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
    // Still starting, unless it is gone (and something else holds the pipe).
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return Outcome::kPending;
    why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                              : "exit status " + std::to_string(WEXITSTATUS(status));
    reset();
    return Outcome::kFailed;
  }
  // The pipe closed without a word: it ended (or is about to).
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 200 && (got = ::waitpid(pid_, &status, WNOHANG)) == 0; ++i) ::usleep(5000);
  if (got == pid_) {
    why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
          : WEXITSTATUS(status) == 127 ? "cannot run " + gExe
                                       : "exit status " + std::to_string(WEXITSTATUS(status));
  } else {
    why = "it closed its channel without serving";
  }
  reset();
  return Outcome::kFailed;
}

void BinaryUpgrade::abandon() {
  if (!inProgress()) return;
  ::kill(pid_, SIGTERM);
  reset();
}

bool startedByUpgrade() {
  int fd = channel();
  if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // not for this process's children
  return fd >= 0;
}

void reportUpgradeReady() {
  int fd = channel();
  if (fd < 0) return;
  char one = '1';
  while (::write(fd, &one, 1) < 0 && errno == EINTR) {
  }
  ::close(fd);
  gChannel = -1;
  ::unsetenv(kChannelVar);
}

}  // namespace kuai::server
