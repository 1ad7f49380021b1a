#include "server/testing/response_reader.h"

#include <strings.h>

namespace kuai::server::testing {

namespace {

parser::Limits readerLimits() {
  parser::Limits limits;
  limits.maxBodyBytes = UINT64_MAX;
  return limits;
}

}  // namespace

std::string ReadResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && ::strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
  }
  return {};
}

bool ReadResponse::has(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && ::strncasecmp(n.data(), name.data(), n.size()) == 0) return true;
  }
  return false;
}

ResponseReader::ResponseReader() : parser_(*this, readerLimits()) {}

void ResponseReader::expect(bool head) { expected_.push_back(head); }

bool ResponseReader::feed(std::string_view bytes) {
  if (!error_.empty()) return false;
  // One byte at a time: the parser takes exactly one response per reset(),
  // and the next one's expectation must be set before its first byte.
  for (char c : bytes) {
    if (upgraded_) return true;  // what follows is the tunnel's
    if (parser_.phase() == parser::ResponseParser::Phase::kIdle) {
      if (expected_.empty()) {
        error_ = "bytes after the last expected response";
        return false;
      }
      parser_.reset(expected_.front());
      expected_.pop_front();
    }
    parser::ResponseParser::Result result = parser_.feed(&c, 1);
    if (result == parser::ResponseParser::Result::kUpgrade) {
      upgraded_ = true;
      continue;
    }
    if (result != parser::ResponseParser::Result::kOk) {
      error_ = *parser_.error().reason ? parser_.error().reason : "response parse error";
      return false;
    }
  }
  return true;
}

bool ResponseReader::finish() {
  if (!error_.empty()) return false;
  if (upgraded_) return true;
  if (parser_.finish() != parser::ResponseParser::Result::kOk) {
    error_ = "response cut short by the close";
    return false;
  }
  return true;
}

size_t ResponseReader::finals() const {
  size_t n = 0;
  for (const ReadResponse& r : responses_) n += r.complete && (r.status < 100 || r.status >= 200);
  return n;
}

void ResponseReader::onHeaders(const parser::Response& resp) {
  ReadResponse r;
  r.status = resp.status;
  r.reason.assign(resp.reason);
  for (const parser::Header& h : resp.headers) r.headers.emplace_back(std::string(h.name), std::string(h.value));
  r.keepAlive = resp.keepAlive;
  r.chunked = resp.chunked;
  responses_.push_back(std::move(r));
}

void ResponseReader::onBody(std::string_view chunk) { responses_.back().body.append(chunk); }

void ResponseReader::onComplete(const parser::Response&) { responses_.back().complete = true; }

std::string withoutDate(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t at = bytes.find("\r\nDate: ", pos);
    if (at == std::string_view::npos) break;
    size_t end = bytes.find("\r\n", at + 2);
    if (end == std::string_view::npos) break;
    out.append(bytes.substr(pos, at - pos));
    pos = end;  // keep the CRLF that ends the line before
  }
  out.append(bytes.substr(pos));
  return out;
}

}  // namespace kuai::server::testing
