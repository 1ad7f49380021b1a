// UpstreamConn: one connection to an upstream server: a Transport (outbound)
// and the reader of its responses (parser::ResponseParser). Idle in its
// pool (call == null) or carrying one ProxyCall's request, whose callbacks
// it forwards. Owned by its UpstreamPool; on the reactor's thread.
#pragma once

#include <cstdint>

#include "parser/response_parser.h"
#include "server/transport.h"
#include "server/upstream_pool.h"

namespace kuai::server {

class ProxyCall;

class UpstreamConn final : public Protocol, public parser::ResponseParser::Handler {
 public:
  UpstreamConn(UpstreamPool& pool, UpstreamPool::Upstream& up, const parser::Limits& limits)
      : pool(pool), up(&up), parser(*this, limits) {}

  // Protocol (the transport's callbacks).
  void onConnect(int err) override;
  void onData(const char* data, size_t len) override;
  void onEof() override { onClosed(0); }
  void onError(int err) override { onClosed(err); }
  void onDrained() override;
  // parser::ResponseParser::Handler
  void onHeaders(const parser::Response& resp) override;
  void onBody(std::string_view chunk) override;
  void onComplete(const parser::Response& resp) override;

  UpstreamPool& pool;
  UpstreamPool::Upstream* up;
  Transport* sock = nullptr;
  parser::ResponseParser parser;
  ProxyCall* call = nullptr;
  uint32_t requests = 0;   // completed on this connection
  uint64_t idleSince = 0;
  bool connected = false;

 private:
  // The upstream closed (err 0) or the connection failed (a negative errno).
  void onClosed(int err);
};

}  // namespace kuai::server
