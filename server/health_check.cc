#include "server/health_check.h"

namespace kuai::server {

HealthProbe::~HealthProbe() {
  if (sock_) sock_->close();
}

bool HealthProbe::start(uint64_t now) {
  const HealthCheckSpec& h = pool_.spec().health;
  deadline_ = now + h.timeoutMs;
  int err = 0;
  sock_ = pool_.reactor().connect(reinterpret_cast<const sockaddr*>(&up_.spec->addr), up_.spec->addrLen, this, err);
  if (!sock_) return false;
  std::string& b = sock_->output().buffer();
  b.append("GET ").append(h.path).append(" HTTP/1.1\r\nHost: ").append(up_.spec->name);
  b.append("\r\nUser-Agent: kuai-health-check\r\nConnection: close\r\n\r\n");
  parser_.reset(false);
  sock_->flush();
  return true;
}

void HealthProbe::onData(const char* data, size_t len) {
  if (parser_.feed(data, len) == parser::ResponseParser::Result::kError) result(false);
}

void HealthProbe::onEof() {
  parser_.finish();
  result(false);  // a complete response has already decided
}

void HealthProbe::result(bool healthy) {
  if (done_) return;
  done_ = true;
  sock_->close();
  sock_ = nullptr;
  pool_.probeDone(&up_, healthy);  // deletes this probe (later)
}

}  // namespace kuai::server
