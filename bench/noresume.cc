// noresume: an LD_PRELOAD shim that makes wrk do a full TLS handshake on every
// connection, for bench/run's `handshakes` case.
//
// wrk 4.1 keeps one SSL object per connection slot and, on reconnect, calls
// SSL_shutdown + SSL_clear. SSL_clear keeps the SSL's session, so the next
// SSL_connect offers it and the server resumes (TLS 1.2 session ID/ticket,
// TLS 1.3 PSK) instead of doing a full handshake. This shim interposes
// SSL_clear and drops the session first (SSL_set_session(ssl, NULL)), so every
// connection starts with no session to offer. Nothing is linked against libssl:
// both functions are looked up in the libssl that wrk itself loaded.
//
// Usage: LD_PRELOAD=/path/to/libnoresume.so wrk ... https://...

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

struct ssl_st;
struct ssl_session_st;

namespace {

using ClearFn = int (*)(ssl_st*);
using SetSessionFn = int (*)(ssl_st*, ssl_session_st*);

ClearFn real_clear = nullptr;
SetSessionFn set_session = nullptr;

void resolve() {
  if (real_clear != nullptr) return;
  real_clear = reinterpret_cast<ClearFn>(dlsym(RTLD_NEXT, "SSL_clear"));
  set_session = reinterpret_cast<SetSessionFn>(dlsym(RTLD_DEFAULT, "SSL_set_session"));
  if (real_clear == nullptr || set_session == nullptr) {
    std::fputs("noresume: SSL_clear/SSL_set_session not found\n", stderr);
    std::abort();
  }
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int SSL_clear(ssl_st* ssl) {
  resolve();
  set_session(ssl, nullptr);
  return real_clear(ssl);
}
