// HealthProbe: one active health check of one upstream: GET the route's
// healthCheck.path on a fresh connection; a 2xx or 3xx within the timeout is
// healthy. Started and owned by its UpstreamPool; on the reactor's thread.
#pragma once

#include <cstdint>

#include "parser/response_parser.h"
#include "server/transport.h"
#include "server/upstream_pool.h"

namespace kuai::server {

class HealthProbe final : public Protocol, public parser::ResponseParser::Handler {
 public:
  HealthProbe(UpstreamPool& pool, UpstreamPool::Upstream& up, const parser::Limits& limits)
      : pool_(pool), up_(up), parser_(*this, limits) {}
  ~HealthProbe() override;

  // False when no socket could be made (a failed check).
  bool start(uint64_t now);
  // Called on every tick: a probe past its deadline has failed.
  void check(uint64_t now) {
    if (now >= deadline_) result(false);
  }

  // Protocol
  void onConnect(int err) override {
    if (err) result(false);
  }
  void onData(const char* data, size_t len) override;
  void onEof() override;
  void onError(int) override { onEof(); }
  void onDrained() override {}
  // parser::ResponseParser::Handler
  void onHeaders(const parser::Response& resp) override {
    if (!resp.interim()) status_ = resp.status;
  }
  void onBody(std::string_view) override {}
  void onComplete(const parser::Response& resp) override {
    if (!resp.interim()) result(status_ >= 200 && status_ < 400);
  }

 private:
  void result(bool healthy);

  UpstreamPool& pool_;
  UpstreamPool::Upstream& up_;
  parser::ResponseParser parser_;
  Transport* sock_ = nullptr;
  uint64_t deadline_ = 0;
  int status_ = 0;
  bool done_ = false;
};

}  // namespace kuai::server
