#include "server/router.h"

#include "server/proxy.h"
#include "server/reactor.h"
#include "server/route_rules.h"
#include "server/thread_context.h"

namespace kuai::server {

Router::Router(std::shared_ptr<const Site> site, ThreadContext& context) : context_(context) {
  setSite(std::move(site));
}

Router::~Router() = default;

void Router::setSite(std::shared_ptr<const Site> site) {
  if (!site) return;
  auto t = std::make_shared<Table>();
  t->site = std::move(site);
  if (!t->site->logging.metricsPath.empty()) t->metrics = std::make_unique<MetricsHandler>();
  for (const RouteSpec& spec : t->site->routes) {
    Route r;
    r.spec = &spec;
    switch (spec.kind) {
      case RouteSpec::Kind::kStatic: {
        // The match prefix is the mount point ("/static/a.css" under
        // "/static/" is "/a.css" in the root).
        std::string mount;
        if (!spec.exact && spec.path.size() > 1) {
          mount = spec.path;
          if (mount.back() == '/') mount.pop_back();
          if (mount.size() < 2) mount.clear();
        }
        r.handler = std::make_shared<StaticHandler>(context_.reactor(), spec.statics, std::move(mount),
                                                    &t->site->compression);
        break;
      }
      case RouteSpec::Kind::kProxy:
        r.handler = std::make_shared<ProxyRoute>(context_.reactor(), t->site, spec);
        break;
      case RouteSpec::Kind::kFixed:
        r.handler = std::make_shared<FixedHandler>(spec.body);
        break;
      case RouteSpec::Kind::kRedirect:
        r.handler = std::make_shared<RedirectHandler>(spec.redirect);
        break;
      case RouteSpec::Kind::kApp:
        break;
    }
    const CompressionSpec* compression =
        t->site->compression.enabled && (spec.kind == RouteSpec::Kind::kProxy || spec.kind == RouteSpec::Kind::kApp)
            ? &t->site->compression
            : nullptr;
    if (spec.headers || spec.rateLimit.rate > 0 || compression) {
      std::function<Handler*()> answer;
      if (r.handler) {
        answer = [h = r.handler] { return h.get(); };
      } else {
        answer = [this, &spec]() -> Handler* {
          Handler* app = context_.appHandler(spec.app);
          return app ? app : &unavailable_;
        };
      }
      r.handler = std::make_shared<RuleHandler>(context_.reactor(), spec, compression, std::move(answer));
    }
    t->routes.push_back(std::move(r));
  }
  // The old table lives on while requests still use it.
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

const Router::Route* Router::match(const parser::Request& req, std::string_view path) const {
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

Handler* Router::route(const parser::Request& req, std::shared_ptr<const void>& keep) {
  if (!table_) return &notFound_;
  if (keep.get() != table_.get()) keep = table_;
  std::string_view path = pathOf(req.target);
  if (table_->metrics && path == table_->site->logging.metricsPath) return table_->metrics.get();
  const Route* r = match(req, path);
  if (!r) return &notFound_;
  if (r->handler) return r->handler.get();
  // An app route: its script's server on this thread, or 503 while it is not
  // loaded (yet, or being replaced after a failure).
  Handler* app = context_.appHandler(r->spec->app);
  return app ? app : &unavailable_;
}

}  // namespace kuai::server
