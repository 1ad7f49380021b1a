#include "server/router.h"

#include "server/connection.h"
#include "server/reactor.h"

namespace kuai::server {

Router::Router(const ServerConfig& config) : config_(config) {
  for (const auto& [path, body] : config.responds) {
    fixed_.push_back(Fixed{path, "Content-Type: text/plain; charset=utf-8\r\n", body});
  }
  if (config.serveStatic) static_ = std::make_unique<StaticFiles>(config.statics);
}

Router::~Router() = default;

void Router::handle(const parser::Request& req, Connection& conn) {
  std::string_view path = req.target;
  if (size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  for (const Fixed& f : fixed_) {
    if (path != f.path) continue;
    if (req.method != "GET" && req.method != "HEAD") {
      conn.writeError(405, "Allow: GET, HEAD\r\n");
      return;
    }
    conn.writeHead(200, f.headers, f.body.size());
    if (!conn.headOnly()) conn.writeBody(f.body);
    return;
  }

  if (!static_) {
    conn.writeError(404);
    return;
  }

  StaticRequest sreq;
  sreq.method = req.method;
  sreq.target = req.target;
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
  static_->handle(sreq, r, conn.reactorNowSeconds());

  if (r.extraHeaders.empty()) {
    conn.writeHead(r.status, r.cachedHeaders, r.contentLength, r.status != 304);
  } else {
    std::string headers;
    headers.reserve(r.cachedHeaders.size() + r.extraHeaders.size());
    headers.append(r.cachedHeaders).append(r.extraHeaders);
    conn.writeHead(r.status, headers, r.contentLength, r.status != 304);
  }
  if (!conn.headOnly() && r.status != 304 && r.contentLength > 0) {
    if (r.file) {
      conn.writeFile(r.file, r.fileOffset, r.contentLength);
    } else if (!r.memory.empty()) {
      conn.writeBody(r.memory.substr(0, r.contentLength));
    } else {
      conn.writeBody(std::string_view(r.owned).substr(0, r.contentLength));
    }
  }
  // Drop references promptly so a changed file's old copy can go.
  r.file.reset();
  r.hold.reset();
}

}  // namespace kuai::server
