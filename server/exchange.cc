#include "server/exchange.h"

#include <unistd.h>

#include <algorithm>

#include "server/compression.h"
#include "server/header_lines.h"
#include "server/http_status.h"
#include "server/site.h"
#include "server/static_files.h"

namespace kuai::server {

void errorPage(int status, std::string& headerLines, std::string& body) {
  headerLines = "Content-Type: text/plain; charset=utf-8\r\n";
  body = std::to_string(status);
  body.append(" ").append(statusReason(status)).append("\n");
}

Exchange::Exchange(ExchangeSink* sink) : sink_(sink) {}
Exchange::~Exchange() = default;

void Exchange::reset(ExchangeSink* sink) {
  sink_ = sink;
  listener_ = nullptr;
  rules_ = nullptr;
  compressSpec_ = nullptr;
  offered_ = 0;
  compressor_.reset();
  ended_ = headersSent_ = head_ = noBody_ = tunnel_ = continued_ = false;
  trailers_.clear();
  requestTrailers_.clear();
  resetCode_ = -1;
  headFlags_ = 0;
  highWater_ = kDefaultHighWater;
  unsent_ = -1;
  waitingDrain = false;
}

void Exchange::writeHead(int status, std::string_view reason, std::string_view headerLines, int64_t contentLength,
                         int keepAliveSeconds, bool serverField) {
  if (!sink_ || headersSent_) return;
  headersSent_ = true;
  noBody_ = head_ || status == 204 || status == 304 || (status >= 100 && status < 200);
  unsent_ = noBody_ ? -1 : contentLength;
  std::string compressed;
  if (compressSpec_ && !noBody_ && startCompression(status, headerLines, contentLength, compressed)) {
    headerLines = compressed;
    contentLength = -1;  // the protocol frames it (chunked, or DATA frames)
  }
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

void Exchange::offerCompression(const CompressionSpec* spec, Encoding encoding) {
  if (encoding == Encoding::kIdentity || !spec || !spec->enabled) return;
  compressSpec_ = spec;
  offered_ = uint8_t(encoding);
}

namespace {

bool containsIgnoreCase(std::string_view s, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= s.size(); ++i) {
    if (parser::equalsIgnoreCase(s.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

}  // namespace

bool Exchange::startCompression(int status, std::string_view headerLines, int64_t contentLength, std::string& lines) {
  const CompressionSpec& spec = *compressSpec_;
  if (status < 200 || status >= 300 || status == 204 || status == 206) return false;
  if (contentLength >= 0 && uint64_t(contentLength) < spec.minSize) return false;
  std::string_view v;
  if (!headerLineValue(headerLines, "content-type", v) || !spec.compressible(v)) return false;
  if (headerLineValue(headerLines, "content-encoding", v) && !v.empty() && !parser::equalsIgnoreCase(v, "identity")) {
    return false;  // already encoded
  }
  if (headerLineValue(headerLines, "cache-control", v) && containsIgnoreCase(v, "no-transform")) return false;
  if (headerLineValue(headerLines, "content-range", v)) return false;
  Encoding enc = Encoding(offered_);
  compressor_ = Compressor::make(enc, spec.level(enc));
  if (!compressor_) return false;
  // The same lines, with a weak ETag (the bytes differ from the identity
  // representation's), Content-Encoding and Vary.
  lines.clear();
  lines.reserve(headerLines.size() + 64);
  forEachHeaderLine(headerLines, [&](std::string_view name, std::string_view value, std::string_view line) {
    if (parser::equalsIgnoreCase(name, "content-encoding") || parser::equalsIgnoreCase(name, "content-length") ||
        parser::equalsIgnoreCase(name, "accept-ranges")) {
      return;
    }
    if (parser::equalsIgnoreCase(name, "etag")) {
      lines.append("ETag: ");
      if (value.substr(0, 2) != "W/") lines.append("W/");
      lines.append(value).append("\r\n");
      return;
    }
    lines.append(line);
    if (line.size() < 2 || line.substr(line.size() - 2) != "\r\n") lines.append("\r\n");
  });
  lines.append("Content-Encoding: ").append(encodingName(enc)).append("\r\nVary: Accept-Encoding\r\n");
  return true;
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
    if (compressor_) {
      // Each write is flushed (a stream's bytes reach the client as they
      // come); the last of an announced length ends the stream.
      std::string out;
      if (!compressor_->write(bytes, out, /*flush=*/true, /*finish=*/unsent_ == 0)) {
        abort();
        return true;
      }
      if (unsent_ == 0) compressor_.reset();
      if (!out.empty()) sink_->sendBody(*this, out);
    } else if (hold) {
      sink_->sendBodyHeld(*this, bytes, *hold);
    } else {
      sink_->sendBody(*this, bytes);
    }
  }
  if (!sink_) return true;
  // Above this much unsent output, ask the writer to wait for onDrain.
  if (sink_->pendingBytes(*this) >= highWater_) {
    waitingDrain = true;
    return false;
  }
  return true;
}

void Exchange::sendFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) {
  if (!sink_ || ended_ || noBody_ || length == 0) return;
  if (compressor_) {
    // Compressed bodies are bytes, not file ranges: read in pieces.
    std::string chunk;
    while (length > 0 && sink_ && compressor_) {
      chunk.resize(size_t(std::min<uint64_t>(length, 256 * 1024)));
      ssize_t n = ::pread(file->fd, chunk.data(), chunk.size(), off_t(offset));
      if (n <= 0) {
        abort();
        return;
      }
      chunk.resize(size_t(n));
      send(chunk, nullptr);
      offset += uint64_t(n);
      length -= uint64_t(n);
    }
    return;
  }
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
  if (compressor_ && sink_) {
    std::string out;
    bool ok = compressor_->write({}, out, false, /*finish=*/true);
    compressor_.reset();
    if (!ok) {
      abort();
      return;
    }
    if (!out.empty()) sink_->sendBody(*this, out);
    if (!sink_) return;
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
  sink_->sendInformational(*this, 100, {});
}

void Exchange::writeInformational(int status, std::string_view headerLines) {
  if (!sink_ || headersSent_ || status < 100 || status > 199 || status == 101) return;
  sink_->sendInformational(*this, status, headerLines);
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
