#include "server/router.h"

#include "server/connection.h"
#include "server/proxy.h"
#include "server/reactor.h"

namespace kuai::server {

Router::Router(std::shared_ptr<const Site> site, Reactor& reactor) : reactor_(reactor) {
  setSite(std::move(site));
}

Router::~Router() = default;

void Router::setSite(std::shared_ptr<const Site> site) {
  if (!site) return;
  auto t = std::make_unique<Table>();
  t->site = std::move(site);
  for (const RouteSpec& spec : t->site->routes) {
    Route r;
    r.spec = &spec;
    if (spec.kind == RouteSpec::Kind::kStatic) {
      r.statics = std::make_unique<StaticFiles>(spec.statics);
    } else if (spec.kind == RouteSpec::Kind::kProxy) {
      r.proxy = ProxyRoute::create(reactor_, t->site, spec);
    }
    t->routes.push_back(std::move(r));
  }
  // The old table's proxy routes live on while requests still use them.
  table_ = std::move(t);
}

namespace {

std::string_view pathOf(std::string_view target) {
  if (size_t q = target.find('?'); q != std::string_view::npos) return target.substr(0, q);
  return target;
}

// Host header without its port, for matching.
std::string_view hostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t end = host.find(']');
    return end == std::string_view::npos ? host : host.substr(0, end + 1);
  }
  size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

}  // namespace

const Router::Route* Router::match(const parser::Request& req) const {
  if (!table_) return nullptr;
  std::string_view path = pathOf(req.target);
  for (const Route& r : table_->routes) {
    const RouteSpec& s = *r.spec;
    if (s.exact ? path != s.path : path.substr(0, s.path.size()) != s.path) {
      // "/api/" also takes "/api" itself.
      if (s.exact || s.path.size() < 2 || s.path.back() != '/' ||
          path != std::string_view(s.path).substr(0, s.path.size() - 1)) {
        continue;
      }
    }
    if (!s.host.empty() && !parser::equalsIgnoreCase(hostName(req.host), s.host)) continue;
    if (!s.methods.empty()) {
      bool ok = false;
      for (const std::string& m : s.methods) ok = ok || m == req.method;
      if (!ok) continue;
    }
    return &r;
  }
  return nullptr;
}

AsyncHandler* Router::asyncHandler(const parser::Request& req) {
  if (!table_) return nullptr;
  const std::string& metrics = table_->site->logging.metricsPath;
  if (!metrics.empty() && pathOf(req.target) == metrics) return nullptr;  // handle() answers
  const Route* r = match(req);
  if (!r) return nullptr;
  if (r->proxy) return r->proxy.get();
  if (r->spec->kind == RouteSpec::Kind::kApp) return reactor_.appHandler(r->spec->app);
  return nullptr;
}

void Router::handle(const parser::Request& req, Connection& conn) {
  std::string_view path = pathOf(req.target);
  if (!table_) {
    conn.writeError(404);
    return;
  }
  const Site& site = *table_->site;
  if (!site.logging.metricsPath.empty() && path == site.logging.metricsPath) {
    std::string body = renderMetrics();
    conn.writeHead(200, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", body.size());
    if (!conn.headOnly()) conn.writeBody(body);
    return;
  }
  const Route* r = match(req);
  if (!r) {
    conn.writeError(404);
    return;
  }
  if (r->statics) {
    std::string_view strip = r->spec->path;
    if (!r->spec->exact && strip.size() > 1 && strip.back() == '/') strip.remove_suffix(1);
    serveStatic(*r->statics, req, conn, r->spec->exact ? std::string_view() : strip);
    return;
  }
  if (r->spec->kind == RouteSpec::Kind::kFixed) {
    if (req.method != "GET" && req.method != "HEAD") {
      conn.writeError(405, "Allow: GET, HEAD\r\n");
      return;
    }
    conn.writeHead(200, "Content-Type: text/plain; charset=utf-8\r\n", r->spec->body.size());
    if (!conn.headOnly()) conn.writeBody(r->spec->body);
    return;
  }
  // An app route whose script is not loaded on this thread (yet, or it is
  // being replaced after a failure).
  conn.writeError(503);
}

// `strip`: the route's mount point, removed from the path ("/static/a.css"
// under "/static/" is "a.css" in the route's root).
void Router::serveStatic(StaticFiles& files, const parser::Request& req, Connection& conn,
                         std::string_view strip) {
  StaticRequest sreq;
  sreq.method = req.method;
  sreq.target = req.target;
  std::string rewritten;
  if (strip.size() > 1) {
    rewritten.assign(req.target.substr(strip.size()));
    if (rewritten.empty() || rewritten[0] != '/') rewritten.insert(0, 1, '/');
    sreq.target = rewritten;
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
  files.handle(sreq, r, conn.reactorNowSeconds());

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
