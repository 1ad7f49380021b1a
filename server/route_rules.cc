#include "server/route_rules.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "server/header_lines.h"
#include "server/http_status.h"
#include "server/reactor.h"

namespace kuai::server {

namespace {

bool sameName(std::string_view a, std::string_view b) { return parser::equalsIgnoreCase(a, b); }

// The Host field without its port ("[::1]:8080" -> "[::1]").
std::string_view hostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t end = host.find(']');
    return end == std::string_view::npos ? host : host.substr(0, end + 1);
  }
  return host.substr(0, host.rfind(':'));
}

}  // namespace

void HeaderRules::apply(std::string_view lines, std::string& out, bool& serverField) const {
  out.clear();
  out.reserve(lines.size() + 64);
  auto dropped = [&](std::string_view name) {
    for (const std::string& r : remove) {
      if (sameName(name, r)) return true;
    }
    for (const auto& s : set) {
      if (sameName(name, s.first)) return true;
    }
    return false;
  };
  forEachHeaderLine(lines, [&](std::string_view name, std::string_view, std::string_view line) {
    if (!name.empty() && dropped(name)) return;
    out.append(line);
    if (line.size() < 2 || line.substr(line.size() - 2) != "\r\n") out.append("\r\n");
  });
  if (serverField && dropped("server")) serverField = false;
  for (const auto& [name, value] : set) out.append(name).append(": ").append(value).append("\r\n");
  for (const auto& [name, value] : append) out.append(name).append(": ").append(value).append("\r\n");
}

bool RedirectHandler::location(std::string_view to, const parser::Request& req, std::string& out) {
  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q);
  query = query.substr(0, query.find('#'));
  path = path.substr(0, path.find('#'));
  out.clear();
  size_t at = 0;
  while (at < to.size()) {
    size_t dollar = to.find('$', at);
    if (dollar == std::string_view::npos) {
      out.append(to.substr(at));
      break;
    }
    out.append(to.substr(at, dollar - at));
    std::string_view rest = to.substr(dollar);
    if (rest.substr(0, 5) == "$host") {
      std::string_view host = hostName(req.host);
      if (host.empty()) return false;
      out.append(host);
      at = dollar + 5;
    } else if (rest.substr(0, 5) == "$path") {
      out.append(path);
      at = dollar + 5;
    } else if (rest.substr(0, 6) == "$query") {
      out.append(query);
      at = dollar + 6;
    } else {
      out.push_back('$');
      at = dollar + 1;
    }
  }
  return true;
}

void RedirectHandler::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  std::string where;
  if (!location(spec_.to, req, where)) {
    ex->writeError(400);  // no Host to redirect to (HTTP/1.0 without one)
    return;
  }
  std::string lines = "Location: " + where + "\r\nContent-Type: text/plain; charset=utf-8\r\n";
  std::string body = std::to_string(spec_.status) + " " + std::string(statusReason(spec_.status)) + "\n";
  ex->writeHead(spec_.status, {}, lines, int64_t(body.size()), Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  ex->write(body);
  ex->end();
}

RateLimiter::RateLimiter(const RateLimitSpec& spec)
    : rate_(spec.rate), capacity_(std::max(1.0, spec.burst ? double(spec.burst) : spec.rate)) {}

bool RateLimiter::admit(std::string_view client, uint64_t nowMs, uint32_t& retryAfterSeconds) {
  auto it = buckets_.find(std::string(client));
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxClients) prune(nowMs);
    it = buckets_.emplace(std::string(client), Bucket{capacity_, nowMs}).first;
  }
  Bucket& b = it->second;
  if (nowMs > b.lastMs) {
    b.tokens = std::min(capacity_, b.tokens + double(nowMs - b.lastMs) * rate_ / 1000.0);
    b.lastMs = nowMs;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  retryAfterSeconds = uint32_t(std::max(1.0, std::ceil((1.0 - b.tokens) / rate_)));
  return false;
}

void RateLimiter::prune(uint64_t nowMs) {
  // Buckets that have refilled are the same as new ones: drop them.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    double tokens = it->second.tokens + double(nowMs - std::min(nowMs, it->second.lastMs)) * rate_ / 1000.0;
    it = tokens >= capacity_ ? buckets_.erase(it) : std::next(it);
  }
  if (buckets_.size() < kMaxClients) return;
  // Still full: the least recently seen tenth goes.
  std::vector<uint64_t> seen;
  seen.reserve(buckets_.size());
  for (const auto& [k, b] : buckets_) seen.push_back(b.lastMs);
  auto cut = seen.begin() + ptrdiff_t(seen.size() / 10);
  std::nth_element(seen.begin(), cut, seen.end());
  uint64_t oldest = *cut;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = it->second.lastMs <= oldest ? buckets_.erase(it) : std::next(it);
  }
}

RuleHandler::RuleHandler(Reactor& reactor, const RouteSpec& spec, const CompressionSpec* compression,
                         std::function<Handler*()> answer)
    : reactor_(reactor), spec_(spec), compression_(compression), answer_(std::move(answer)) {
  if (spec.rateLimit.rate > 0) limiter_ = std::make_unique<RateLimiter>(spec.rateLimit);
}

void RuleHandler::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  if (spec_.headers) ex->setHeaderRules(spec_.headers.get());
  if (limiter_) {
    uint32_t retry = 0;
    if (!limiter_->admit(ex->remoteAddress(), reactor_.nowMs(), retry)) {
      ex->writeError(429, "Retry-After: " + std::to_string(retry) + "\r\n");
      return;
    }
  }
  if (compression_ && !req.isHead) {
    std::string_view accepted = req.header("accept-encoding");
    if (!accepted.empty()) ex->offerCompression(compression_, negotiate(accepted, compression_->encodings));
  }
  answer_()->onRequest(req, ex);
}

}  // namespace kuai::server
