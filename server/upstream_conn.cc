#include "server/upstream_conn.h"

#include "server/proxy_call.h"

namespace kuai::server {

void UpstreamConn::onConnect(int err) {
  if (err == 0) {
    connected = true;
    if (call) call->connected();
    return;
  }
  if (call) {
    call->connectFailed(err);
  } else {
    pool.dropIdle(this);
  }
}

void UpstreamConn::onData(const char* data, size_t len) {
  if (!call) {
    // Bytes on an idle connection: nothing was asked; it cannot be trusted.
    pool.dropIdle(this);
    return;
  }
  ProxyCall* c = call;
  c->upstreamBytes();
  if (c->tunneling()) {
    c->tunnelData(data, len);
    return;
  }
  auto r = parser.feed(data, len);
  c->afterFeed(r, data, len);
}

// The upstream closed (err 0) or the connection failed (a negative errno).
void UpstreamConn::onClosed(int err) {
  if (!call) {
    pool.dropIdle(this);
    return;
  }
  call->upstreamEof(err);
}

void UpstreamConn::onDrained() {
  if (call) call->upstreamDrained();
}

void UpstreamConn::onHeaders(const parser::Response& resp) {
  if (call) call->upstreamHead(resp);
}

void UpstreamConn::onBody(std::string_view chunk) {
  if (call) call->upstreamBody(chunk);
}

void UpstreamConn::onComplete(const parser::Response& resp) {
  if (call) call->upstreamComplete(resp);
}

}  // namespace kuai::server
