// A route's rules around whatever answers it: redirects (a route kind of
// their own), response header rules and per-client rate limits (on any
// route). One instance per route and reactor, in the Router's route table;
// on the reactor's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "server/exchange.h"
#include "server/site.h"

namespace kuai::server {

class Reactor;

// Answers with the route's redirect: its status, Location with the request's
// $host, $path and $query, and a one-line text body.
class RedirectHandler final : public Handler {
 public:
  explicit RedirectHandler(const RedirectSpec& spec) : spec_(spec) {}
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  bool takesBody() const override { return false; }

  // `to` with the substitutions made; false when it needs a host the request
  // does not have.
  static bool location(std::string_view to, const parser::Request& req, std::string& out);

 private:
  const RedirectSpec& spec_;  // the site's, which outlives the route table
};

// Token buckets per client address (one thread's).
class RateLimiter {
 public:
  explicit RateLimiter(const RateLimitSpec& spec);
  // Takes one request's token; when there is none, false with the seconds
  // until there is.
  bool admit(std::string_view client, uint64_t nowMs, uint32_t& retryAfterSeconds);
  size_t clients() const { return buckets_.size(); }
  // Most addresses tracked at once; above it, full buckets are dropped (they
  // hold nothing a new bucket would not), then the oldest.
  static constexpr size_t kMaxClients = 100'000;

 private:
  struct Bucket {
    double tokens;
    uint64_t lastMs;
  };
  void prune(uint64_t nowMs);
  double rate_;
  double capacity_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// Wraps what answers a route with its rules: the rate limit (429 with
// Retry-After before the handler sees the request) and the header rules
// (set on the exchange, applied to its head). `answer` gives the handler
// for this request (an app route's changes as its script loads).
class RuleHandler final : public Handler {
 public:
  // compression: the site's, for a route whose answers are compressed as
  // they stream (proxy and app routes); null: none.
  RuleHandler(Reactor& reactor, const RouteSpec& spec, const CompressionSpec* compression,
              std::function<Handler*()> answer);
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override;
  bool takesBody() const override { return answer_()->takesBody(); }
  bool answersContinue() const override { return answer_()->answersContinue(); }
  void onConnectionClose(uint64_t connectionId, uint64_t bytesRead, uint64_t bytesWritten) override {
    answer_()->onConnectionClose(connectionId, bytesRead, bytesWritten);
  }

 private:
  Reactor& reactor_;
  const RouteSpec& spec_;
  const CompressionSpec* compression_;
  std::function<Handler*()> answer_;
  std::unique_ptr<RateLimiter> limiter_;
};

}  // namespace kuai::server
