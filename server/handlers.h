// The native route handlers: what a static, fixed (--respond), metrics or
// error route answers, each through the request's Exchange like every other
// handler (the proxy's ProxyRoute and the scripts' servers are the others).
// All of them answer at once, when the whole request is in (takesBody() is
// false: a body is read and dropped by the protocol). One instance per route
// and reactor, owned by the Router's route table; on the reactor's thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "server/exchange.h"
#include "server/compression.h"
#include "server/static_files.h"

namespace kuai::server {

class Reactor;

// Files under one root: GET/HEAD, conditionals, ranges (sendfile for what is
// not held in memory). `mount`: the route's path prefix, removed from the
// target ("/static/a.css" under "/static" is "/a.css" in the root); empty: none.
//
// With compression (the site's, null: none), a compressible file (by type,
// at least minSize bytes) goes to a client that accepts it as its
// precompressed sibling (file.br, file.zst, file.gz) when there, else
// compressed here once and kept in a per-reactor cache (cacheBytes, least
// recently used out; keyed by path, ETag and encoding). Each encoding has its
// own ETag; Range requests, HEAD and 304s stay on the identity
// representation; every answer for such a file carries Vary: Accept-Encoding.
class StaticHandler final : public Handler {
 public:
  StaticHandler(Reactor& reactor, StaticOptions options, std::string mount,
                const CompressionSpec* compression = nullptr);
  ~StaticHandler() override;
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  bool takesBody() const override { return false; }
  // Bytes of compressed bodies kept now.
  uint64_t compressedCacheBytes() const;

 private:
  struct Compressed;
  struct Cache;
  // Answers `r` (a 200 for a compressible file) encoded when the client
  // accepts an encoding that is there or can be made; false: send identity.
  bool answerEncoded(const StaticRequest& sreq, std::string_view acceptEncoding, const StaticResponse& r,
                     const std::shared_ptr<Exchange>& ex);
  std::shared_ptr<const Compressed> compressedBody(std::string_view path, std::string_view etag, Encoding e,
                                                  const StaticResponse& r);

  bool compressibleType(std::string_view type);

  Reactor& reactor_;
  StaticFiles files_;
  std::string mount_;
  const CompressionSpec* compression_;
  std::string_view lastType_;
  bool lastCompressible_ = false;
  StaticResponse scratch_;  // reused for every response, keeping its buffers
  StaticResponse sibling_;  // a precompressed sibling's lookup
  std::string target_;      // reused: the target below the mount point
  std::unique_ptr<Cache> cache_;
};

// A fixed 200 text/plain body for GET and HEAD (--respond PATH=BODY); 405
// for other methods.
class FixedHandler final : public Handler {
 public:
  explicit FixedHandler(std::string_view body) : body_(body) {}
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  bool takesBody() const override { return false; }

 private:
  std::string_view body_;  // the site's, which outlives the route table
};

// The Prometheus text of every reactor's counters (logging.metrics).
class MetricsHandler final : public Handler {
 public:
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  bool takesBody() const override { return false; }
};

// kuai's error page with one status: 404 where no route matches, 503 for an
// app route whose script is not loaded on this thread.
class ErrorHandler final : public Handler {
 public:
  explicit ErrorHandler(int status) : status_(status) {}
  void onRequest(const parser::Request&, const std::shared_ptr<Exchange>& ex) override { ex->writeError(status_); }
  bool takesBody() const override { return false; }

 private:
  int status_;
};

}  // namespace kuai::server
