#include "server/handlers.h"

#include "server/metrics.h"
#include "server/reactor.h"

namespace kuai::server {

StaticHandler::StaticHandler(Reactor& reactor, StaticOptions options, std::string mount)
    : reactor_(reactor), files_(std::move(options)), mount_(std::move(mount)) {}

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
    if (r.file) {
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
