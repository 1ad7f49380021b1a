// createTlsContext for code that shares a process with node: loads BoringSSL's
// side of kuai from its own shared object, libkuai_tls.so, opened with
// RTLD_LOCAL | RTLD_DEEPBIND.
//
// Why: node exports OpenSSL 3's SSL_* symbols, which have the same names as
// BoringSSL's; without deep binding, BoringSSL's references (from libssl to
// libcrypto, say) would bind to OpenSSL's code. Deep binding keeps them inside
// the TLS object and its libraries, and RTLD_LOCAL keeps its symbols out of
// everyone else's way.
//
// Under AddressSanitizer the object is loaded with libc's own dlopen: the
// sanitizer's dlopen refuses RTLD_DEEPBIND because a deep-bound library would
// take libc's malloc. libkuai_tls.so is built with the sanitizer too, so its
// first dependency is the sanitizer runtime and its lookups (BoringSSL's
// included) find the sanitizer's malloc first.
#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "tls/tls.h"

namespace kuai::tls {

namespace {

using CreateFn = void* (*)(const TlsConfig*, std::string*);

// The folder of the object this code is linked into (the kuai binary, a test,
// or the addon kuai.node, which node loaded from elsewhere).
std::string ownDirectory() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&ownDirectory), &info) && info.dli_fname) {
    char real[PATH_MAX];
    std::string path = ::realpath(info.dli_fname, real) ? real : info.dli_fname;
    if (path.find('/') != std::string::npos) return path.substr(0, path.rfind('/'));
  }
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return ".";
  std::string dir(exe, size_t(n));
  return dir.substr(0, dir.rfind('/'));
}

std::string libraryPath() {
  if (const char* env = std::getenv("KUAI_TLS_LIBRARY"); env && *env) return env;
  std::string dir = ownDirectory();
  // bazel-bin/kuai (or kuai.node) beside bazel-bin/tls/libkuai_tls.so; or
  // both in one folder.
  for (const char* rel : {"/tls/libkuai_tls.so", "/libkuai_tls.so", "/../lib/kuai/libkuai_tls.so"}) {
    std::string p = dir + rel;
    if (::access(p.c_str(), R_OK) == 0) return p;
  }
  return dir + "/tls/libkuai_tls.so";
}

void* openDeepBound(const std::string& path) {
  int flags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#if defined(__SANITIZE_ADDRESS__)
  using DlopenFn = void* (*)(const char*, int);
  void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  auto real = libc ? reinterpret_cast<DlopenFn>(::dlsym(libc, "dlopen")) : nullptr;
  if (real) return real(path.c_str(), flags);
#endif
  return ::dlopen(path.c_str(), flags);
}

CreateFn load(std::string& err) {
  static std::once_flag once;
  static CreateFn fn = nullptr;
  static std::string loadError;
  std::call_once(once, [] {
    std::string path = libraryPath();
    void* handle = openDeepBound(path);
    if (!handle) {
      const char* e = ::dlerror();
      loadError = "cannot load the TLS library " + path + ": " + (e ? e : "unknown error");
      return;
    }
    fn = reinterpret_cast<CreateFn>(::dlsym(handle, "kuai_tls_create_context"));
    if (!fn) loadError = "the TLS library " + path + " has no kuai_tls_create_context";
  });
  if (!fn) err = loadError;
  return fn;
}

}  // namespace

std::shared_ptr<TlsContext> createTlsContext(const TlsConfig& config, std::string& err) {
  CreateFn create = load(err);
  if (!create) return nullptr;
  void* p = create(&config, &err);
  if (!p) return nullptr;
  auto* holder = static_cast<std::shared_ptr<TlsContext>*>(p);
  std::shared_ptr<TlsContext> ctx = std::move(*holder);
  delete holder;
  return ctx;
}

}  // namespace kuai::tls
