#include "server/config_file.h"
#include "server/node_runtime.h"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>

#include "server/cli.h"
#include "server/config_schema.h"

extern char** environ;

namespace kuai::server {

namespace fs = std::filesystem;
using json::Value;

namespace {
std::string gEvaluatorSource;  // setConfigEvaluator()
}  // namespace

void setConfigEvaluator(std::string source) { gEvaluatorSource = std::move(source); }



namespace {

constexpr int kEvalTimeoutSeconds = 30;

bool endsWith(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool readFile(const std::string& path, std::string& out, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// Runs `node -e EVALUATOR path` with the pinned node; its stdout (the
// evaluator's JSON) goes to `out`, its stderr straight to ours.
bool evaluateScript(const std::string& path, std::string& out, std::string& err) {
  std::string node = nodeBinaryPath();
  if (node.empty() || ::access(node.c_str(), X_OK) != 0) {
    err = "cannot evaluate " + path + ": Node.js not found at " + node + " (run tools/setup, or use a .json config)";
    return false;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    err = "cannot evaluate " + path + ": pipe: " + std::strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  if (gEvaluatorSource.empty()) {
    err = "cannot evaluate " + path + ": this program has no config evaluator (use a .json config)";
    return false;
  }
  std::string flag = "-e";
  char* argv[] = {node.data(), flag.data(), gEvaluatorSource.data(), const_cast<char*>(path.c_str()), nullptr};
  // A server reloading its config may block or ignore signals; the child
  // starts with none blocked and the usual dispositions.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, reset;
  sigemptyset(&none);
  sigemptyset(&reset);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&reset, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &reset);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, node.c_str(), &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    err = "cannot evaluate " + path + ": cannot run " + node + ": " + std::strerror(rc);
    return false;
  }

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kEvalTimeoutSeconds);
  bool timedOut = false;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = ::poll(&p, 1, int(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;
    ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.append(buf, size_t(got));
  }
  ::close(fds[0]);
  if (timedOut) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timedOut) {
    err = path + ": could not be evaluated: still running after " + std::to_string(kEvalTimeoutSeconds) +
          "s (does the exported Promise settle?)";
    return false;
  }
  if (WIFSIGNALED(status)) {
    err = path + ": could not be evaluated (node was killed by signal " + std::to_string(WTERMSIG(status)) + ")";
    return false;
  }
  if (WEXITSTATUS(status) != 0) {
    err = path + ": could not be evaluated (see the error above; node exited with status " +
          std::to_string(WEXITSTATUS(status)) + ")";
    return false;
  }
  return true;
}

}  // namespace

bool applyConfigValue(const Value& root, const std::string& file, const std::string& baseDir, ServerConfig& config,
                      std::string& err) {
  ServerConfig c = config;
  auto site = std::make_shared<Site>();
  site->file = file;
  if (!readConfig(root, file, baseDir, c, *site, err)) return false;
  const ListenSpec& first = site->listen.front();
  c.host = first.host;
  c.port = first.port;
  c.tls = first.tls;
  c.tlsConfig = first.tlsConfig;
  c.site = std::move(site);
  config = std::move(c);
  return true;
}

bool loadConfigFile(const std::string& path, ServerConfig& config, std::string& err) {
  bool isJson = endsWith(path, ".json");
  bool isScript = endsWith(path, ".js") || endsWith(path, ".cjs") || endsWith(path, ".mjs");
  if (!isJson && !isScript) {
    err = path + ": unknown kind of config file (expected a name ending in .json, .js, .cjs or .mjs)";
    return false;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    err = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    err = path + ": is a directory, not a config file";
    return false;
  }
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  std::string baseDir = (ec ? fs::path(path) : abs).lexically_normal().parent_path().string();

  Value root;
  if (isJson) {
    std::string text;
    if (!readFile(path, text, err)) return false;
    std::string perr;
    if (!json::parse(text, root, perr)) {
      err = path + ":" + perr;
      return false;
    }
    return applyConfigValue(root, path, baseDir, config, err);
  }

  std::string out;
  if (!evaluateScript(path, out, err)) return false;
  Value envelope;
  std::string perr;
  if (out.empty()) {
    err = path + ": could not be evaluated (node printed no result; does the file call process.exit()?)";
    return false;
  }
  if (!json::parse(out, envelope, perr) || !envelope.isObject()) {
    err = path + ": could not be evaluated (node printed something that is not the expected JSON)";
    return false;
  }
  if (const Value* e = envelope.find("error")) {
    const Value* at = e->find("path");
    const Value* msg = e->find("message");
    std::string where = at && at->isString() && !at->string.empty() ? at->string + ": " : "";
    err = path + ": " + where + (msg && msg->isString() ? msg->string : "cannot be used as a config");
    return false;
  }
  const Value* value = envelope.find("config");
  if (!value) {
    err = path + ": could not be evaluated (node printed no config)";
    return false;
  }
  return applyConfigValue(*value, path, baseDir, config, err);
}

}  // namespace kuai::server
