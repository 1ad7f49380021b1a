#include "server/handlers.h"

#include <unistd.h>

#include <list>
#include <unordered_map>

#include "server/header_lines.h"
#include "server/metrics.h"
#include "server/reactor.h"

namespace kuai::server {

// A compressed body of one file in one encoding, with its head's lines.
struct StaticHandler::Compressed {
  std::string key;
  std::string body;
  std::string headers;  // the identity's lines, ETag per encoding, Content-Encoding, Vary
  std::string etag;     // quotes included
};

// The per-reactor cache of compressed bodies: a map and an LRU list, bounded
// by the bytes of the bodies.
struct StaticHandler::Cache {
  std::list<std::shared_ptr<const Compressed>> lru;  // most recent first
  std::unordered_map<std::string_view, std::list<std::shared_ptr<const Compressed>>::iterator> index;
  uint64_t bytes = 0;
};

namespace {

constexpr std::string_view kVary = "Vary: Accept-Encoding\r\n";

// The value of a field in header lines ("" when absent).
std::string_view lineValue(std::string_view lines, std::string_view name) {
  std::string_view v;
  return headerLineValue(lines, name, v) ? v : std::string_view();
}

// The identity's header lines for an encoded representation: its own ETag,
// no Accept-Ranges (ranges are for the identity only), Content-Encoding, Vary.
std::string encodedHeaders(std::string_view identity, std::string_view etag, Encoding e) {
  std::string out;
  forEachHeaderLine(identity, [&](std::string_view name, std::string_view, std::string_view line) {
    if (!parser::equalsIgnoreCase(name, "etag") && !parser::equalsIgnoreCase(name, "accept-ranges")) out.append(line);
  });
  out.append("ETag: ").append(etag).append("\r\nContent-Encoding: ").append(encodingName(e)).append("\r\n");
  out.append(kVary);
  return out;
}

// Whether If-None-Match lists `etag` (weak comparison) or is "*".
bool noneMatch(std::string_view header, std::string_view etag) {
  if (header.empty()) return false;
  if (header.find('*') != std::string_view::npos) return true;
  size_t at = 0;
  while ((at = header.find(etag, at)) != std::string_view::npos) {
    size_t end = at + etag.size();
    if (end == header.size() || header[end] == ',' || header[end] == ' ') return true;
    at = end;
  }
  return false;
}

}  // namespace

StaticHandler::StaticHandler(Reactor& reactor, StaticOptions options, std::string mount,
                             const CompressionSpec* compression)
    : reactor_(reactor),
      files_(std::move(options)),
      mount_(std::move(mount)),
      compression_(compression && compression->enabled ? compression : nullptr),
      cache_(std::make_unique<Cache>()) {}

StaticHandler::~StaticHandler() = default;

uint64_t StaticHandler::compressedCacheBytes() const { return cache_->bytes; }

bool StaticHandler::compressibleType(std::string_view type) {
  // Types come from the MIME table (static storage): the last answer holds
  // while the same string comes back.
  if (type.data() != lastType_.data() || type.size() != lastType_.size()) {
    lastType_ = type;
    lastCompressible_ = compression_->compressible(type);
  }
  return lastCompressible_;
}

std::shared_ptr<const StaticHandler::Compressed> StaticHandler::compressedBody(std::string_view path,
                                                                             std::string_view etag, Encoding e,
                                                                             const StaticResponse& r) {
  std::string key;
  key.append(path).append(1, '\0').append(etag).append(1, '\0').append(encodingName(e));
  if (auto it = cache_->index.find(key); it != cache_->index.end()) {
    cache_->lru.splice(cache_->lru.begin(), cache_->lru, it->second);
    return *it->second;
  }
  if (r.contentLength > compression_->maxFileSize || r.contentLength > compression_->cacheBytes) return nullptr;
  std::string whole;
  std::string_view identity = r.memory;
  if (r.file) {
    whole.resize(size_t(r.contentLength));
    ssize_t n = ::pread(r.file->fd, whole.data(), whole.size(), off_t(r.fileOffset));
    if (n != ssize_t(whole.size())) return nullptr;
    identity = whole;
  }
  auto c = std::make_shared<Compressed>();
  if (!compressAll(e, compression_->level(e), identity, c->body)) return nullptr;
  c->body.shrink_to_fit();
  c->key = std::move(key);
  // The identity's ETag with the encoding: "6553f100-c" -> "6553f100-c-br".
  std::string_view inner = etag;
  bool weak = inner.substr(0, 2) == "W/";
  if (weak) inner.remove_prefix(2);
  if (inner.size() >= 2 && inner.front() == '"') inner = inner.substr(1, inner.size() - 2);
  c->etag.append(weak ? "W/\"" : "\"").append(inner).append("-").append(encodingName(e)).append("\"");
  c->headers = encodedHeaders(r.cachedHeaders, c->etag, e);
  cache_->bytes += c->body.size();
  cache_->lru.push_front(c);
  cache_->index.emplace(std::string_view(c->key), cache_->lru.begin());
  while (cache_->bytes > compression_->cacheBytes && !cache_->lru.empty()) {
    const std::shared_ptr<const Compressed>& old = cache_->lru.back();
    cache_->bytes -= old->body.size();
    cache_->index.erase(std::string_view(old->key));
    cache_->lru.pop_back();
  }
  return c;
}

bool StaticHandler::answerEncoded(const StaticRequest& sreq, std::string_view acceptEncoding, const StaticResponse& r,
                                  const std::shared_ptr<Exchange>& ex) {
  const CompressionSpec& spec = *compression_;
  std::string_view path = sreq.target.substr(0, sreq.target.find_first_of("?#"));
  // What can be sent: precompressed siblings that are there, and what can
  // be made here.
  uint8_t available = 0;
  StaticResponse* siblings[4] = {};
  bool dirForm = !path.empty() && path.back() == '/';
  std::string siblingTarget;
  if (spec.precompressed && !dirForm) {
    for (Encoding e : {Encoding::kBrotli, Encoding::kZstd, Encoding::kGzip}) {
      if (!(spec.encodings & bit(e))) continue;
      // Only asked for when this encoding would be the client's choice.
      if (negotiate(acceptEncoding, uint8_t(available | bit(e))) != e) continue;
      siblingTarget.assign(path).append(encodingSuffix(e));
      StaticRequest q;
      q.method = "GET";
      q.target = siblingTarget;
      q.pagesForMissing = false;
      files_.handle(q, sibling_, reactor_.nowSeconds());
      if (sibling_.status == 200 && sibling_.contentLength > 0) {
        available |= bit(e);
        siblings[unsigned(e)] = &sibling_;
        break;  // the best one the client takes
      }
    }
  }
  uint8_t made = r.contentLength <= spec.maxFileSize ? spec.encodings : 0;
  Encoding e = negotiate(acceptEncoding, uint8_t(available | made));
  if (e == Encoding::kIdentity) return false;
  std::string_view etag = r.etag;

  if (StaticResponse* s = siblings[unsigned(e)]) {
    std::string_view sibEtag = lineValue(s->cachedHeaders, "ETag");
    if (noneMatch(sreq.ifNoneMatch, sibEtag)) {
      std::string lines = "ETag: " + std::string(sibEtag) + "\r\n" + std::string(kVary);
      ex->writeHead(304, {}, lines, -1, Exchange::kNoKeepAliveHeader, /*serverField=*/true);
      ex->end();
      return true;
    }
    std::string headers = encodedHeaders(r.cachedHeaders, sibEtag, e);
    ex->writeHead(200, {}, headers, int64_t(s->contentLength), Exchange::kNoKeepAliveHeader, /*serverField=*/true);
    if (s->file) {
      ex->sendFile(s->file, s->fileOffset, s->contentLength);
    } else if (s->memoryHeld) {
      ex->writeHeld(s->memory.substr(0, s->contentLength), s->hold);
    } else {
      ex->write(s->memory.substr(0, s->contentLength));
    }
    ex->end();
    s->file.reset();
    s->hold.reset();
    return true;
  }

  // Keyed by the file served (a fallback page answers many paths).
  std::shared_ptr<const Compressed> c = compressedBody(r.fileKey, etag, e, r);
  if (!c) return false;
  if (noneMatch(sreq.ifNoneMatch, c->etag)) {
    std::string lines = "ETag: " + c->etag + "\r\n" + std::string(kVary);
    ex->writeHead(304, {}, lines, -1, Exchange::kNoKeepAliveHeader, /*serverField=*/true);
    ex->end();
    return true;
  }
  ex->writeHead(200, {}, c->headers, int64_t(c->body.size()), Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  ex->writeHeld(c->body, c);
  ex->end();
  return true;
}

void StaticHandler::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  StaticRequest sreq;
  sreq.method = req.method;
  sreq.target = req.target;
  if (!mount_.empty()) {
    target_.assign(req.target.substr(std::min(mount_.size(), req.target.size())));
    if (target_.empty() || target_[0] != '/') target_.insert(0, 1, '/');
    sreq.target = target_;
  }
  for (const parser::Header& h : req.headers) {
    // Only the few conditional/range fields matter; compare lengths first.
    switch (h.name.size()) {
      case 5:
        if (parser::equalsIgnoreCase(h.name, "range")) sreq.range = h.value;
        break;
      case 8:
        if (parser::equalsIgnoreCase(h.name, "if-range")) sreq.ifRange = h.value;
        break;
      case 13:
        if (parser::equalsIgnoreCase(h.name, "if-none-match")) sreq.ifNoneMatch = h.value;
        break;
      case 17:
        if (parser::equalsIgnoreCase(h.name, "if-modified-since")) sreq.ifModifiedSince = h.value;
        break;
      default:
        break;
    }
  }
  StaticResponse& r = scratch_;  // handle() resets it, keeping its buffers
  files_.handle(sreq, r, reactor_.nowSeconds());

  // Compression: only for a compressible file of some size; then every
  // answer about it varies with Accept-Encoding.
  bool varies = compression_ && !r.contentType.empty() &&
                ((r.status == 200 && r.contentLength >= compression_->minSize && r.contentLength > 0) ||
                 r.status == 304) &&  // (a 304 has no length: by the type alone)
                compressibleType(r.contentType);
  if (varies && r.status == 200 && !req.isHead && sreq.range.empty()) {
    std::string_view accepted = req.header("accept-encoding");
    if (!accepted.empty() && answerEncoded(sreq, accepted, r, ex)) {
      r.file.reset();
      r.hold.reset();
      return;
    }
  }
  if (varies) r.extraHeaders.append(kVary);

  // (A 304 carries no Content-Length: the protocol leaves it out.)
  int64_t length = int64_t(r.contentLength);
  if (r.extraHeaders.empty()) {
    ex->writeHead(r.status, {}, r.cachedHeaders, length, Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  } else {
    std::string headers;
    headers.reserve(r.cachedHeaders.size() + r.extraHeaders.size());
    headers.append(r.cachedHeaders).append(r.extraHeaders);
    ex->writeHead(r.status, {}, headers, length, Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  }
  if (r.status != 304 && r.contentLength > 0) {
    if (!r.parts.empty()) {
      // Several ranges: each part's delimiter and fields, then its range.
      for (const StaticResponse::Part& p : r.parts) {
        ex->write(std::string_view(r.owned).substr(p.textAt, p.textLen));
        if (p.length > 0) ex->sendFile(r.file, p.offset, p.length);
      }
    } else if (r.file) {
      ex->sendFile(r.file, r.fileOffset, r.contentLength);
    } else if (r.memoryHeld) {
      ex->writeHeld(r.memory.substr(0, r.contentLength), r.hold);
    } else if (!r.memory.empty()) {
      ex->write(r.memory.substr(0, r.contentLength));
    } else {
      ex->write(std::string_view(r.owned).substr(0, r.contentLength));
    }
  }
  ex->end();
  // Drop references promptly so a changed file's old copy can go.
  r.file.reset();
  r.hold.reset();
}

void FixedHandler::onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) {
  if (req.method != "GET" && req.method != "HEAD") {
    ex->writeError(405, "Allow: GET, HEAD\r\n");
    return;
  }
  ex->writeHead(200, {}, "Content-Type: text/plain; charset=utf-8\r\n", int64_t(body_.size()),
                Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  ex->write(body_);
  ex->end();
}

void MetricsHandler::onRequest(const parser::Request&, const std::shared_ptr<Exchange>& ex) {
  std::string body = renderMetrics();
  ex->writeHead(200, {}, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", int64_t(body.size()),
                Exchange::kNoKeepAliveHeader, /*serverField=*/true);
  ex->write(body);
  ex->end();
}

}  // namespace kuai::server
