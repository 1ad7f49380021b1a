// createTlsContext for the kuai binary: loads BoringSSL's side of kuai from its
// own shared object, libkuai_tls.so, opened with RTLD_LOCAL | RTLD_DEEPBIND.
//
// Why: libnode (the scripting layer) links OpenSSL 3, whose SSL_* symbols have
// the same names as BoringSSL's. Linked into one binary, one set binds to the
// other's code and Node crashes at start-up. Deep binding keeps BoringSSL's
// references inside the TLS object, and RTLD_LOCAL keeps its symbols out of
// everyone else's way. Sanitizer builds cannot use RTLD_DEEPBIND; they link
// tls.cc directly instead (see tls/BUILD.bazel).
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

std::string libraryPath() {
  if (const char* env = std::getenv("KUAI_TLS_LIBRARY"); env && *env) return env;
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return "libkuai_tls.so";
  exe[n] = 0;
  std::string dir(exe);
  dir.resize(dir.rfind('/'));
  // bazel-bin/kuai beside bazel-bin/tls/libkuai_tls.so; or both in one folder.
  for (const char* rel : {"/tls/libkuai_tls.so", "/libkuai_tls.so", "/../lib/kuai/libkuai_tls.so"}) {
    std::string p = dir + rel;
    if (::access(p.c_str(), R_OK) == 0) return p;
  }
  return dir + "/tls/libkuai_tls.so";
}

CreateFn load(std::string& err) {
  static std::once_flag once;
  static CreateFn fn = nullptr;
  static std::string loadError;
  std::call_once(once, [] {
    std::string path = libraryPath();
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
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
