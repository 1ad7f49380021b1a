#include "server/site_config.h"

#include <filesystem>

#include "server/config_file.h"

namespace kuai::server {

namespace {

bool given(const ServerConfig& c, const char* option) { return c.given.count(option) != 0; }

// The listener the command line describes (--host, --port, --tls-*).
ListenSpec commandLineListener(const ServerConfig& c) {
  ListenSpec l;
  l.host = c.host;
  l.port = c.port;
  l.tls = c.tls;
  l.tlsConfig = c.tlsConfig;
  l.http2 = c.http2;
  return l;
}

// --respond PATH=BODY: exact-path routes, ahead of the others.
std::vector<RouteSpec> fixedRoutes(const ServerConfig& c) {
  std::vector<RouteSpec> out;
  for (const auto& [path, body] : c.responds) {
    RouteSpec r;
    r.kind = RouteSpec::Kind::kFixed;
    r.path = path;
    r.exact = true;
    r.body = body;
    out.push_back(std::move(r));
  }
  return out;
}

// `kuai serve DIR`: the site the command line describes on its own.
std::shared_ptr<Site> serveSite(const ServerConfig& c) {
  auto site = std::make_shared<Site>();
  site->listen.push_back(commandLineListener(c));
  site->routes = fixedRoutes(c);
  site->compression.enabled = c.compression;
  RouteSpec files;
  files.kind = RouteSpec::Kind::kStatic;
  files.path = "/";
  files.statics = c.statics;
  std::error_code ec;
  auto abs = std::filesystem::absolute(files.statics.root, ec);
  if (!ec) files.statics.root = abs.lexically_normal().string();
  if (files.statics.root.size() > 1 && files.statics.root.back() == '/') files.statics.root.pop_back();
  site->routes.push_back(std::move(files));
  return site;
}

// --fallback / --not-found: the file must be under each static root now.
bool pagesThere(const ServerConfig& cli, const Site& site, std::string& err) {
  for (const RouteSpec& r : site.routes) {
    std::error_code ec;
    // (A root that is not there has its own error, when the route starts.)
    if (r.kind != RouteSpec::Kind::kStatic || !std::filesystem::is_directory(r.statics.root, ec)) continue;
    for (auto [option, rel] : {std::pair{"--fallback", &r.statics.fallback},
                               std::pair{"--not-found", &r.statics.notFound}}) {
      if (!given(cli, option) || rel->empty()) continue;
      if (!std::filesystem::is_regular_file(r.statics.root + "/" + *rel, ec)) {
        err = std::string("option ") + option + ": " + *rel + ": no such file under " + r.statics.root;
        return false;
      }
    }
  }
  return true;
}

}  // namespace

bool resolveSite(ServerConfig& config, std::string& err) {
  if (config.configFile.empty()) {
    // Scripts listen themselves; only `kuai serve DIR` has a site of its own.
    if (config.serveStatic) {
      config.site = serveSite(config);
      return pagesThere(config, *config.site, err);
    }
    return true;
  }
  ServerConfig fromFile = config;  // the file's settings over the defaults
  if (!loadConfigFile(config.configFile, fromFile, err)) return false;
  auto site = std::make_shared<Site>(*fromFile.site);
  const ServerConfig& cli = config;
  // The command line overrides the file, option by option.
  if (given(cli, "--threads")) fromFile.threads = cli.threads;
  if (given(cli, "--io")) fromFile.io = cli.io;
  if (given(cli, "--host") || given(cli, "--port") || given(cli, "--tls-cert")) {
    site->listen = {commandLineListener(cli)};  // one listener, the command line's
  }
  if (given(cli, "--no-http2") || given(cli, "--h2c")) {
    for (ListenSpec& l : site->listen) l.http2 = cli.http2;
  }
  if (given(cli, "--list")) {
    for (RouteSpec& r : site->routes) {
      if (r.kind == RouteSpec::Kind::kStatic) r.statics.listDirectories = true;
    }
  }
  for (RouteSpec& r : site->routes) {
    if (r.kind != RouteSpec::Kind::kStatic) continue;
    if (given(cli, "--fallback")) r.statics.fallback = cli.statics.fallback;
    if (given(cli, "--not-found")) r.statics.notFound = cli.statics.notFound;
  }
  if (!pagesThere(cli, *site, err)) return false;
  if (given(cli, "--no-compression")) site->compression.enabled = false;
  if (given(cli, "--dotfiles")) {
    for (RouteSpec& r : site->routes) {
      if (r.kind == RouteSpec::Kind::kStatic) r.statics.dotfiles = Dotfiles::kAllow;
    }
  }
  if (given(cli, "--respond")) {
    std::vector<RouteSpec> routes = fixedRoutes(cli);
    routes.insert(routes.end(), site->routes.begin(), site->routes.end());
    site->routes = std::move(routes);
  }
  if (given(cli, "--max-request-line")) fromFile.limits.maxRequestLine = cli.limits.maxRequestLine;
  if (given(cli, "--max-field-size")) fromFile.limits.maxFieldSize = cli.limits.maxFieldSize;
  if (given(cli, "--max-header-bytes")) fromFile.limits.maxHeaderBytes = cli.limits.maxHeaderBytes;
  if (given(cli, "--max-headers")) fromFile.limits.maxHeaders = cli.limits.maxHeaders;
  if (given(cli, "--max-body")) fromFile.limits.maxBodyBytes = cli.limits.maxBodyBytes;
  if (given(cli, "--header-timeout")) fromFile.timeouts.headerMs = cli.timeouts.headerMs;
  if (given(cli, "--idle-timeout")) fromFile.timeouts.idleMs = cli.timeouts.idleMs;
  if (given(cli, "--body-timeout")) fromFile.timeouts.bodyMs = cli.timeouts.bodyMs;
  if (given(cli, "--shutdown-timeout")) fromFile.timeouts.shutdownMs = cli.timeouts.shutdownMs;
  if (given(cli, "--cpu-budget")) fromFile.cpuBudgetMs = cli.cpuBudgetMs;
  if (given(cli, "--max-requests")) fromFile.maxRequestsPerConnection = cli.maxRequestsPerConnection;
  const ListenSpec& first = site->listen.front();
  fromFile.host = first.host;
  fromFile.port = first.port;
  fromFile.tls = first.tls;
  fromFile.tlsConfig = first.tlsConfig;
  fromFile.site = std::move(site);
  config = std::move(fromFile);
  return true;
}

}  // namespace kuai::server
