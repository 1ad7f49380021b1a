#include "server/node_runtime.h"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
extern "C" void __asan_init();
#endif

namespace kuai::server {

namespace {

std::string selfDirectory() {
  std::string self = executablePath();
  if (self.empty()) return ".";
  return self.substr(0, self.rfind('/'));
}

// The first of `candidates` that exists, else the first.
std::string firstExisting(const std::vector<std::string>& candidates) {
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), F_OK) == 0) return c;
  }
  return candidates.front();
}

}  // namespace

std::string executablePath() {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  return n > 0 ? std::string(exe, size_t(n)) : std::string();
}

std::string nodeBinaryPath() {
  if (const char* env = std::getenv("KUAI_NODE_BINARY"); env && *env) return env;
  return firstExisting({executablePath() + ".runfiles/node/bin/node", selfDirectory() + "/../lib/kuai/node/bin/node"});
}

std::string addonPath() {
  if (const char* env = std::getenv("KUAI_ADDON"); env && *env) return env;
  return firstExisting({selfDirectory() + "/kuai.node", selfDirectory() + "/../lib/kuai/kuai.node"});
}

void execNode(const std::vector<std::string>& args, std::string& err) {
  std::string node = nodeBinaryPath();
  if (::access(node.c_str(), X_OK) != 0) {
    err = "cannot run scripts: Node.js not found at " + node + " (run tools/setup)";
    return;
  }
#if defined(__SANITIZE_ADDRESS__)
  // node is not instrumented; the addon is. The sanitizer runtime has to come
  // first in the process, and Node's own process-lifetime allocations would all
  // be reported as leaks at exit.
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&__asan_init), &info) && info.dli_fname) {
    std::string preload = info.dli_fname;
    if (const char* old = std::getenv("LD_PRELOAD"); old && *old) preload += std::string(":") + old;
    ::setenv("LD_PRELOAD", preload.c_str(), 1);
  }
  std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
  ::setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "detect_leaks=0").c_str(), 1);
#endif
  // The addon evaluates a .js config again in node: it finds node by this.
  ::setenv("KUAI_NODE_BINARY", node.c_str(), 1);
  std::vector<char*> argv;
  argv.push_back(node.data());
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(node.c_str(), argv.data());
  err = "cannot run scripts: " + node + ": " + std::strerror(errno);
}

}  // namespace kuai::server
