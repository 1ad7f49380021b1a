#include "server/exchange.h"

#include <algorithm>

#include "server/http_status.h"
#include "server/site.h"
#include "server/static_files.h"

namespace kuai::server {

void errorPage(int status, std::string& headerLines, std::string& body) {
  headerLines = "Content-Type: text/plain; charset=utf-8\r\n";
  body = std::to_string(status);
  body.append(" ").append(statusReason(status)).append("\n");
}

void Exchange::reset(ExchangeSink* sink) {
  sink_ = sink;
  listener_ = nullptr;
  rules_ = nullptr;
  ended_ = headersSent_ = head_ = noBody_ = tunnel_ = continued_ = false;
  unsent_ = -1;
  waitingDrain = false;
}

void Exchange::writeHead(int status, std::string_view reason, std::string_view headerLines, int64_t contentLength,
                         int keepAliveSeconds, bool serverField) {
  if (!sink_ || headersSent_) return;
  headersSent_ = true;
  noBody_ = head_ || status == 204 || status == 304 || (status >= 100 && status < 200);
  unsent_ = noBody_ ? -1 : contentLength;
  if (rules_) {
    std::string lines;
    rules_->apply(headerLines, lines, serverField);
    sink_->sendHead(*this, status, reason, lines, contentLength, keepAliveSeconds, serverField);
    return;
  }
  sink_->sendHead(*this, status, reason, headerLines, contentLength, keepAliveSeconds, serverField);
}

void Exchange::writeError(int status, std::string_view extraHeaders) {
  std::string lines, body;
  errorPage(status, lines, body);
  lines.append(extraHeaders);
  writeHead(status, {}, lines, int64_t(body.size()), kNoKeepAliveHeader, /*serverField=*/true);
  write(body);
  end();
}

bool Exchange::send(std::string_view bytes, const std::shared_ptr<const void>* hold) {
  if (!sink_ || ended_) return true;
  if (tunnel_) {
    sink_->sendRaw(*this, bytes);
  } else {
    if (!headersSent_) writeHead(200, {}, {}, -1);
    if (!sink_) return true;
    if (noBody_ || bytes.empty()) return true;
    if (unsent_ >= 0) {
      // Never past the announced length: what follows it would be read as
      // the next response.
      if (uint64_t(unsent_) < bytes.size()) bytes = bytes.substr(0, size_t(unsent_));
      unsent_ -= int64_t(bytes.size());
      if (bytes.empty()) return true;
    }
    if (hold) {
      sink_->sendBodyHeld(*this, bytes, *hold);
    } else {
      sink_->sendBody(*this, bytes);
    }
  }
  if (!sink_) return true;
  // Above this much unsent output, ask the writer to wait for onDrain.
  constexpr size_t kHighWater = 64 * 1024;
  if (sink_->pendingBytes(*this) >= kHighWater) {
    waitingDrain = true;
    return false;
  }
  return true;
}

void Exchange::sendFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) {
  if (!sink_ || ended_ || noBody_ || length == 0) return;
  if (unsent_ >= 0) {
    length = std::min(length, uint64_t(unsent_));
    unsent_ -= int64_t(length);
    if (length == 0) return;
  }
  sink_->sendFile(*this, std::move(file), offset, length);
}

void Exchange::end() {
  if (ended_) return;
  if (sink_ && !headersSent_) writeHead(200, {}, {}, 0);
  if (unsent_ > 0) {
    abort();  // shorter than announced: the client must see it cut short
    return;
  }
  ended_ = true;
  if (sink_) sink_->sendEnd(*this);
}

void Exchange::acceptUpgrade(std::string_view headerLines) {
  if (!sink_ || headersSent_) return;
  headersSent_ = true;
  tunnel_ = true;
  sink_->switchProtocols(*this, headerLines, /*writeHead=*/true);
}

void Exchange::startRaw() {
  if (!sink_ || headersSent_) return;
  headersSent_ = true;
  tunnel_ = true;
  sink_->switchProtocols(*this, {}, /*writeHead=*/false);
}

void Exchange::writeContinue() {
  if (!sink_ || headersSent_ || continued_) return;
  continued_ = true;
  sink_->sendContinue(*this);
}

void Exchange::abort() {
  if (!sink_) return;
  ended_ = true;
  sink_->abortResponse(*this);
}

size_t Exchange::pendingBytes() const { return sink_ ? sink_->pendingBytes(*this) : 0; }

void Exchange::pauseBody() {
  if (sink_ && !ended_) sink_->setReading(*this, false);
}

void Exchange::resumeBody() {
  if (sink_) sink_->setReading(*this, true);
}

}  // namespace kuai::server
