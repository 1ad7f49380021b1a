#include "server/config_file.h"
#include "server/node_runtime.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "server/json.h"

namespace kuai::server {
namespace {

namespace fs = std::filesystem;

// ---- JSON ----

json::Value parseOk(const std::string& text) {
  json::Value v;
  std::string err;
  EXPECT_TRUE(json::parse(text, v, err)) << text << ": " << err;
  return v;
}

std::string parseErr(const std::string& text) {
  json::Value v;
  std::string err;
  EXPECT_FALSE(json::parse(text, v, err)) << text;
  return err;
}

TEST(Json, Values) {
  json::Value v = parseOk(R"( {"a": [1, -2.5, 3e2, 0, -0, 1E-2], "b": {"c": true, "d": false, "e": null},
                             "s": "x", "empty": {}, "none": []} )");
  ASSERT_TRUE(v.isObject());
  ASSERT_EQ(v.members.size(), 5u);
  EXPECT_EQ(v.members[0].key, "a");  // file order kept
  const json::Value* a = v.find("a");
  ASSERT_TRUE(a && a->isArray());
  ASSERT_EQ(a->array.size(), 6u);
  EXPECT_EQ(a->array[0].number, 1);
  EXPECT_EQ(a->array[1].number, -2.5);
  EXPECT_EQ(a->array[2].number, 300);
  EXPECT_EQ(a->array[5].number, 0.01);
  const json::Value* b = v.find("b");
  ASSERT_TRUE(b && b->isObject());
  EXPECT_TRUE(b->find("c")->isBool());
  EXPECT_TRUE(b->find("c")->boolean);
  EXPECT_FALSE(b->find("d")->boolean);
  EXPECT_TRUE(b->find("e")->isNull());
  EXPECT_EQ(v.find("s")->string, "x");
  EXPECT_TRUE(v.find("empty")->isObject());
  EXPECT_TRUE(v.find("none")->isArray());
  EXPECT_EQ(v.find("nope"), nullptr);
  EXPECT_EQ(parseOk("42").number, 42);
  EXPECT_EQ(parseOk("\xEF\xBB\xBF\"bom\"").string, "bom");
}

TEST(Json, StringEscapes) {
  EXPECT_EQ(parseOk(R"("a\"b\\c\/d\b\f\n\r\t")").string, "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(parseOk(R"("\u0041\u00e9\u20AC")").string, "A\xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(parseOk(R"("\ud83d\ude00")").string, "\xF0\x9F\x98\x80");  // surrogate pair
  EXPECT_EQ(parseOk(R"("\u0000")").string, std::string(1, '\0'));
  EXPECT_EQ(parseOk("\"caf\xC3\xA9\"").string, "caf\xC3\xA9");  // raw UTF-8
}

TEST(Json, ErrorsHaveLineAndColumn) {
  EXPECT_EQ(parseErr("{\n  \"a\": 1,\n}"), "3:1: trailing comma before '}'");
  EXPECT_EQ(parseErr("[1, 2,]"), "1:7: trailing comma before ']'");
  EXPECT_EQ(parseErr("{\"a\": 1 \"b\": 2}"), "1:9: expected ',' or '}' after an object member, got '\"'");
  EXPECT_EQ(parseErr("{\"a\" 1}"), "1:6: expected ':' after the member name, got '1'");
  EXPECT_EQ(parseErr("{a: 1}"), "1:2: expected a member name in double quotes, got 'a'");
  EXPECT_EQ(parseErr("{\"a\": 1, \"a\": 2}"), "1:10: duplicate key \"a\"");
  EXPECT_EQ(parseErr("{\"x\": 'y'}"), "1:7: strings must use double quotes");
  EXPECT_EQ(parseErr("{\"x\": True}"),
            "1:7: unexpected 'True' (expected a JSON value: an object, array, string, number, true, false or null)");
  EXPECT_EQ(parseErr("[undefined]"),
            "1:2: unexpected 'undefined' (expected a JSON value: an object, array, string, number, true, false or null)");
  EXPECT_EQ(parseErr("// comment\n{}"), "1:1: unexpected '/' (expected a JSON value)");
  EXPECT_EQ(parseErr("[1]\n// trailing"), "2:1: unexpected '/' after the end of the document");
  EXPECT_EQ(parseErr(""), "1:1: empty document (expected a JSON value)");
  EXPECT_EQ(parseErr("   \n  "), "2:3: empty document (expected a JSON value)");
  EXPECT_EQ(parseErr("[1, 2"), "1:6: expected ',' or ']' after an array element, got end of input");
  EXPECT_EQ(parseErr("{\"a\": [\n\"abc"), "2:1: unterminated string");
  EXPECT_EQ(parseErr("\"a\nb\""), "1:3: unterminated string (a newline must be written \\n)");
  EXPECT_EQ(parseErr("\"a\tb\""), "1:3: control character 0x09 in a string (escape it)");
  EXPECT_EQ(parseErr(R"("\x41")"), "1:2: invalid escape \\x in a string");
  EXPECT_EQ(parseErr(R"("\u12G4")"), "1:6: expected four hex digits after \\u, got 'G'");
  EXPECT_EQ(parseErr(R"("ab\ud83d")"), "1:4: high surrogate not followed by a \\u low surrogate");
  EXPECT_EQ(parseErr(R"("\ud83d\u0041")"), "1:2: high surrogate not followed by a \\u low surrogate");
  EXPECT_EQ(parseErr(R"("\ude00")"), "1:2: lone low surrogate in a \\u escape");
  EXPECT_EQ(parseErr("\"\xC3\""), "1:2: invalid UTF-8 in a string");
  EXPECT_EQ(parseErr("\"\xC0\xAF\""), "1:2: invalid UTF-8 in a string");      // overlong '/'
  EXPECT_EQ(parseErr("\"\xED\xA0\x80\""), "1:2: invalid UTF-8 in a string");  // encoded surrogate
  EXPECT_EQ(parseErr("[01]"), "1:2: numbers may not have leading zeros");
  EXPECT_EQ(parseErr("[1.]"), "1:4: expected a digit after the decimal point, got ']'");
  EXPECT_EQ(parseErr("[1e]"), "1:4: expected a digit in the exponent, got ']'");
  EXPECT_EQ(parseErr("[-]"), "1:3: expected a digit, got ']'");
  EXPECT_EQ(parseErr("[+1]"), "1:2: unexpected '+' (expected a JSON value)");
  EXPECT_EQ(parseErr("[1e999]"), "1:2: number out of range");
  EXPECT_EQ(parseErr("[NaN]"),
            "1:2: unexpected 'NaN' (expected a JSON value: an object, array, string, number, true, false or null)");
  // Columns count characters, not bytes.
  EXPECT_EQ(parseErr("{\"\xC3\xA9\": x}"),
            "1:7: unexpected 'x' (expected a JSON value: an object, array, string, number, true, false or null)");
  EXPECT_NE(parseErr(std::string(300, '[') + std::string(300, ']')).find("nested too deeply"), std::string::npos);
}

TEST(Json, SerializeRoundTrips) {
  std::string text = R"({"a":[1,2.5,true,false,null],"b":"q\"\n\u0001"})";
  json::Value v = parseOk(text);
  EXPECT_EQ(json::serialize(v), text);
  EXPECT_EQ(json::quote("a\"b"), "\"a\\\"b\"");
}

// ---- config files ----

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kuai-config-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "public");
    fs::create_directories(dir_ / "logs");
    write("app.js", "module.exports = {};\n");
    write("cert.pem", "x");
    write("key.pem", "x");
    write("ocsp.der", "x");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  // Loads `text` as <dir>/kuai.config.json; err holds the message on failure.
  bool load(const std::string& text, ServerConfig& config, std::string& err, const std::string& name = "kuai.config.json") {
    return loadConfigFile(write(name, text), config, err);
  }

  // The message for `text`, less the "<dir>/kuai.config.json: " prefix.
  std::string error(const std::string& text) {
    ServerConfig config;
    std::string err;
    EXPECT_FALSE(load(text, config, err)) << text;
    std::string prefix = (dir_ / "kuai.config.json").string() + ": ";
    EXPECT_EQ(err.compare(0, prefix.size(), prefix), 0) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    return err.size() >= prefix.size() ? err.substr(prefix.size()) : err;
  }

  // An error in one route, given as the JSON of that route.
  std::string routeError(const std::string& route) {
    return error(R"({"listen": 8080, "routes": [)" + route + "]}");
  }

  fs::path dir_;
};

constexpr const char* kMinimal = R"({"listen": 8080, "routes": [{"static": {"root": "public"}}]})";

TEST_F(ConfigFile, MinimalAndDefaults) {
  ServerConfig config;
  std::string err;
  std::string path = write("kuai.config.json", kMinimal);
  ASSERT_TRUE(loadConfigFile(path, config, err)) << err;
  ASSERT_TRUE(config.site);
  const Site& site = *config.site;
  EXPECT_EQ(site.file, path);
  ASSERT_EQ(site.listen.size(), 1u);
  EXPECT_EQ(site.listen[0].host, "127.0.0.1");
  EXPECT_EQ(site.listen[0].port, 8080);
  EXPECT_FALSE(site.listen[0].tls);
  ASSERT_EQ(site.routes.size(), 1u);
  const RouteSpec& r = site.routes[0];
  EXPECT_EQ(r.path, "/");
  EXPECT_FALSE(r.exact);
  EXPECT_TRUE(r.host.empty());
  EXPECT_TRUE(r.methods.empty());
  EXPECT_EQ(r.kind, RouteSpec::Kind::kStatic);
  EXPECT_EQ(r.statics.root, (dir_ / "public").string());
  EXPECT_FALSE(r.statics.listDirectories);
  EXPECT_EQ(r.statics.indexFile, "index.html");
  EXPECT_TRUE(site.logging.accessLog.empty());
  EXPECT_TRUE(site.logging.metricsPath.empty());
  // Server-wide settings the file leaves out keep their values.
  ServerConfig defaults;
  EXPECT_EQ(config.threads, defaults.threads);
  EXPECT_FALSE(config.sticky);
  EXPECT_EQ(config.io, defaults.io);
  EXPECT_EQ(config.limits.maxBodyBytes, defaults.limits.maxBodyBytes);
  EXPECT_EQ(config.timeouts.idleMs, defaults.timeouts.idleMs);
  EXPECT_EQ(config.maxRequestsPerConnection, defaults.maxRequestsPerConnection);
  // The first listener, for the parts of the server that know one.
  EXPECT_EQ(config.host, "127.0.0.1");
  EXPECT_EQ(config.port, 8080);
  EXPECT_FALSE(config.tls);
}

TEST_F(ConfigFile, Everything) {
  write("sub/dir/placeholder", "");
  std::string text = R"({
    "threads": 3,
    "sticky": true,
    "io": "epoll",
    "listen": [
      {"host": "0.0.0.0", "port": 8080},
      {"host": "[::1]", "port": 8443, "tls": {"cert": "cert.pem", "key": "key.pem", "ocsp": "ocsp.der"}},
      {"port": 9443, "tls": {"certificates": [{"cert": "cert.pem", "key": "key.pem"},
                                              {"cert": "./cert.pem", "key": "key.pem"}]}}
    ],
    "routes": [
      {"match": "/static/", "static": {"root": "./public", "list": true, "index": "home.htm"}},
      {"match": "/api/", "exact": true, "host": "Example.COM", "methods": ["get", "POST"],
       "proxy": {"upstreams": ["127.0.0.1:9001", {"address": "[::1]:9002", "weight": 3}, "localhost:9003"],
                 "balance": "weighted", "connectTimeout": "500ms", "sendTimeout": 1500, "readTimeout": "2m",
                 "keepalive": {"maxIdle": 8, "idleTimeout": "3s", "maxRequests": 50},
                 "retries": 2, "maxFails": 3, "failTimeout": "20s", "host": "backend.internal",
                 "stripPrefix": true,
                 "healthCheck": {"path": "/health", "interval": "1s", "timeout": "300ms"}}},
      {"match": "/b/", "proxy": {"upstreams": ["127.0.0.1:1"], "keepalive": false, "healthCheck": {}}},
      {"match": "/app", "app": "app.js"},
      {"static": "sub/dir/../../public"}
    ],
    "limits": {"requestLine": "4k", "fieldSize": 2048, "headerBytes": "16k", "headers": 50, "bodyBytes": "8m",
               "headerTimeout": "5s", "idleTimeout": 60000, "bodyTimeout": "7s", "sendTimeout": "9s",
               "maxRequests": 77, "shutdownTimeout": "2s"},
    "logging": {"access": "logs/access.log", "metrics": "/metrics"}
  })";
  ServerConfig config;
  std::string err;
  ASSERT_TRUE(load(text, config, err)) << err;
  EXPECT_EQ(config.threads, 3);
  EXPECT_TRUE(config.sticky);
  EXPECT_EQ(config.io, IoBackend::kEpoll);
  EXPECT_EQ(config.limits.maxRequestLine, 4096u);
  EXPECT_EQ(config.limits.maxFieldSize, 2048u);
  EXPECT_EQ(config.limits.maxHeaderBytes, 16384u);
  EXPECT_EQ(config.limits.maxHeaders, 50u);
  EXPECT_EQ(config.limits.maxBodyBytes, 8u << 20);
  EXPECT_EQ(config.timeouts.headerMs, 5000u);
  EXPECT_EQ(config.timeouts.idleMs, 60000u);
  EXPECT_EQ(config.timeouts.bodyMs, 7000u);
  EXPECT_EQ(config.timeouts.sendMs, 9000u);
  EXPECT_EQ(config.timeouts.shutdownMs, 2000u);
  EXPECT_EQ(config.maxRequestsPerConnection, 77u);
  EXPECT_EQ(config.host, "0.0.0.0");
  EXPECT_EQ(config.port, 8080);

  const Site& site = *config.site;
  ASSERT_EQ(site.listen.size(), 3u);
  EXPECT_EQ(site.listen[1].host, "::1");
  EXPECT_EQ(site.listen[1].port, 8443);
  EXPECT_TRUE(site.listen[1].tls);
  ASSERT_EQ(site.listen[1].tlsConfig.certificates.size(), 1u);
  EXPECT_EQ(site.listen[1].tlsConfig.certificates[0].certFile, (dir_ / "cert.pem").string());
  EXPECT_EQ(site.listen[1].tlsConfig.certificates[0].keyFile, (dir_ / "key.pem").string());
  EXPECT_EQ(site.listen[1].tlsConfig.certificates[0].ocspFile, (dir_ / "ocsp.der").string());
  EXPECT_EQ(site.listen[2].host, "127.0.0.1");
  ASSERT_EQ(site.listen[2].tlsConfig.certificates.size(), 2u);
  EXPECT_EQ(site.listen[2].tlsConfig.certificates[1].certFile, (dir_ / "cert.pem").string());
  EXPECT_TRUE(site.listen[2].tlsConfig.certificates[1].ocspFile.empty());

  ASSERT_EQ(site.routes.size(), 5u);
  const RouteSpec& st = site.routes[0];
  EXPECT_EQ(st.path, "/static/");
  EXPECT_EQ(st.kind, RouteSpec::Kind::kStatic);
  EXPECT_EQ(st.statics.root, (dir_ / "public").string());
  EXPECT_TRUE(st.statics.listDirectories);
  EXPECT_EQ(st.statics.indexFile, "home.htm");

  const RouteSpec& px = site.routes[1];
  EXPECT_EQ(px.path, "/api/");
  EXPECT_TRUE(px.exact);
  EXPECT_EQ(px.host, "example.com");
  EXPECT_EQ(px.methods, (std::vector<std::string>{"GET", "POST"}));
  ASSERT_EQ(px.kind, RouteSpec::Kind::kProxy);
  ASSERT_TRUE(px.proxy);
  const ProxySpec& p = *px.proxy;
  ASSERT_EQ(p.upstreams.size(), 3u);
  EXPECT_EQ(p.upstreams[0].name, "127.0.0.1:9001");
  EXPECT_EQ(p.upstreams[0].weight, 1u);
  ASSERT_EQ(p.upstreams[0].addr.ss_family, AF_INET);
  auto* v4 = reinterpret_cast<const sockaddr_in*>(&p.upstreams[0].addr);
  EXPECT_EQ(ntohs(v4->sin_port), 9001);
  EXPECT_EQ(ntohl(v4->sin_addr.s_addr), 0x7f000001u);
  EXPECT_EQ(p.upstreams[0].addrLen, sizeof(sockaddr_in));
  EXPECT_EQ(p.upstreams[1].name, "[::1]:9002");
  EXPECT_EQ(p.upstreams[1].weight, 3u);
  ASSERT_EQ(p.upstreams[1].addr.ss_family, AF_INET6);
  auto* v6 = reinterpret_cast<const sockaddr_in6*>(&p.upstreams[1].addr);
  EXPECT_EQ(ntohs(v6->sin6_port), 9002);
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));
  EXPECT_EQ(p.upstreams[2].name, "localhost:9003");  // a name, resolved now
  EXPECT_NE(p.upstreams[2].addrLen, 0u);
  EXPECT_EQ(p.balance, Balance::kWeighted);
  EXPECT_EQ(p.connectTimeoutMs, 500u);
  EXPECT_EQ(p.sendTimeoutMs, 1500u);
  EXPECT_EQ(p.readTimeoutMs, 120000u);
  EXPECT_EQ(p.maxIdle, 8u);
  EXPECT_EQ(p.idleTimeoutMs, 3000u);
  EXPECT_EQ(p.maxRequestsPerConnection, 50u);
  EXPECT_EQ(p.retries, 2u);
  EXPECT_EQ(p.maxFails, 3u);
  EXPECT_EQ(p.failTimeoutMs, 20000u);
  EXPECT_EQ(p.hostRewrite, "backend.internal");
  EXPECT_TRUE(p.stripPrefix);
  EXPECT_TRUE(p.health.enabled);
  EXPECT_EQ(p.health.path, "/health");
  EXPECT_EQ(p.health.intervalMs, 1000u);
  EXPECT_EQ(p.health.timeoutMs, 300u);

  const ProxySpec& q = *site.routes[2].proxy;  // defaults
  ProxySpec d;
  EXPECT_EQ(q.maxIdle, 0u);  // keepalive: false
  EXPECT_EQ(q.balance, d.balance);
  EXPECT_EQ(q.connectTimeoutMs, d.connectTimeoutMs);
  EXPECT_EQ(q.retries, d.retries);
  EXPECT_FALSE(q.stripPrefix);
  EXPECT_TRUE(q.hostRewrite.empty());
  EXPECT_TRUE(q.health.enabled);  // present, so active checks, with the default settings
  EXPECT_EQ(q.health.path, d.health.path);
  EXPECT_EQ(q.health.intervalMs, d.health.intervalMs);

  EXPECT_EQ(site.routes[3].kind, RouteSpec::Kind::kApp);
  EXPECT_EQ(site.routes[3].app, (dir_ / "app.js").string());
  EXPECT_EQ(site.routes[4].kind, RouteSpec::Kind::kStatic);
  EXPECT_EQ(site.routes[4].statics.root, (dir_ / "public").string());  // normalised

  EXPECT_EQ(site.logging.accessLog, (dir_ / "logs/access.log").string());
  EXPECT_EQ(site.logging.metricsPath, "/metrics");
}

TEST_F(ConfigFile, ListenForms) {
  ServerConfig config;
  std::string err;
  ASSERT_TRUE(load(R"({"listen": [8080, 0, {"port": 8443}], "routes": [{"app": "app.js"}]})", config, err)) << err;
  ASSERT_EQ(config.site->listen.size(), 3u);
  EXPECT_EQ(config.site->listen[0].port, 8080);
  EXPECT_EQ(config.site->listen[1].port, 0);
  EXPECT_EQ(config.site->listen[2].port, 8443);
  for (const ListenSpec& l : config.site->listen) EXPECT_EQ(l.host, "127.0.0.1");
  // Port 0 (any free port) may repeat.
  ASSERT_TRUE(load(R"({"listen": [0, 0], "routes": [{"app": "app.js"}]})", config, err)) << err;
}

TEST_F(ConfigFile, RelativePathsFollowTheConfigFile) {
  // The config in a subdirectory, loaded from elsewhere: paths are relative to
  // the file, not to the working directory.
  write("site/www/index.html", "hi");
  write("site/server.js", "");
  write("site/tls/c.pem", "x");
  write("site/tls/k.pem", "x");
  fs::create_directories(dir_ / "site/log");
  std::string path = write("site/kuai.config.json", R"({
    "listen": [{"port": 1, "tls": {"cert": "tls/c.pem", "key": "./tls/k.pem"}}],
    "routes": [{"match": "/w/", "static": {"root": "www"}}, {"app": "server.js"},
               {"static": {"root": "/tmp"}}],
    "logging": {"access": "log/a.log"}})");
  fs::path cwd = fs::current_path();
  fs::current_path("/");
  ServerConfig config;
  std::string err;
  bool ok = loadConfigFile(path, config, err);
  fs::current_path(cwd);
  ASSERT_TRUE(ok) << err;
  const Site& site = *config.site;
  EXPECT_EQ(site.routes[0].statics.root, (dir_ / "site/www").string());
  EXPECT_EQ(site.routes[1].app, (dir_ / "site/server.js").string());
  EXPECT_EQ(site.routes[2].statics.root, "/tmp");
  EXPECT_EQ(site.listen[0].tlsConfig.certificates[0].certFile, (dir_ / "site/tls/c.pem").string());
  EXPECT_EQ(site.listen[0].tlsConfig.certificates[0].keyFile, (dir_ / "site/tls/k.pem").string());
  EXPECT_EQ(site.logging.accessLog, (dir_ / "site/log/a.log").string());
  EXPECT_TRUE(config.tls);
  EXPECT_EQ(config.tlsConfig.certificates.size(), 1u);

  // A relative config path works the same.
  fs::current_path(dir_);
  ok = loadConfigFile("site/kuai.config.json", config, err);
  fs::current_path(cwd);
  ASSERT_TRUE(ok) << err;
  EXPECT_EQ(config.site->file, "site/kuai.config.json");
  EXPECT_EQ(config.site->routes[0].statics.root, (dir_ / "site/www").string());

  ASSERT_TRUE(load(R"({"listen": 1, "routes": [{"app": "app.js"}], "logging": {"access": "-"}})", config, err));
  EXPECT_EQ(config.site->logging.accessLog, "-");
}

TEST_F(ConfigFile, TheExamplesOfTheBrief) {
  EXPECT_EQ(routeError(R"({"app": "app.js"}, {"match": "/api/", "proxy": {"upstreams": ["127.0.0.1:9001"],
                                                                          "balance": "fastest"}})"),
            R"(routes[1].proxy.balance: expected one of "round_robin", "least_conn", "weighted", got "fastest")");
  EXPECT_EQ(routeError(R"({"static": {"root": "./nope"}})"), "routes[0].static.root: ./nope: no such directory");
  EXPECT_EQ(error(R"({"listen": [{"port": "abc"}], "routes": [{"app": "app.js"}]})"),
            R"(listen[0].port: expected a whole number 0-65535, got "abc")");
  EXPECT_EQ(routeError(R"({"app": "app.js"}, {"app": "app.js"}, {"proxy": {"upstream": ["127.0.0.1:1"]}})"),
            R"(routes[2].proxy.upstream: unknown key (did you mean "upstreams"?))");
}

TEST_F(ConfigFile, TopLevelErrors) {
  EXPECT_EQ(error("[]"), "expected an object at the top level, got an array");
  EXPECT_EQ(error("{}"), "listen: required (e.g. listen: 8080, or [{ host: '127.0.0.1', port: 8080 }])");
  EXPECT_EQ(error(R"({"listen": 1})"),
            "routes: required (e.g. routes: [{ match: '/', static: { root: './public' } }])");
  EXPECT_EQ(error(R"({"listen": 1, "routes": []})"), "routes: expected at least one route");
  EXPECT_EQ(error(R"({"listen": 1, "routes": {}})"), "routes: expected an array of routes, got an object");
  EXPECT_EQ(error(R"({"listen": 1, "routes": [{"app": "app.js"}], "colour": "blue"})"),
            "colour: unknown key (known keys: threads sticky io listen routes limits logging compression)");
  // compression
  const std::string base = R"({"listen": 1, "routes": [{"app": "app.js"}], "compression": )";
  EXPECT_EQ(error(base + "1}"),
            "compression: expected an object { types, minSize, levels, encodings, precompressed, cacheSize } or "
            "false, got 1");
  EXPECT_EQ(error(base + R"({"levels": {"br": 12}}})"), "compression.levels.br: expected a whole number 0-11, got 12");
  EXPECT_EQ(error(base + R"({"levels": {"gzip": 0}}})"), "compression.levels.gzip: expected a whole number 1-9, got 0");
  EXPECT_EQ(error(base + R"({"levels": {"deflate": 1}}})"),
            "compression.levels.deflate: unknown key (known keys: br zstd gzip)");
  EXPECT_EQ(error(base + R"({"encodings": ["br", "lzma"]}})"),
            R"(compression.encodings[1]: expected one of "br", "zstd", "gzip", got "lzma")");
  EXPECT_EQ(error(base + R"({"types": ["text"]}})"),
            R"(compression.types[0]: expected a media type like "text/*" or "application/json", got "text")");
  EXPECT_EQ(error(base + R"({"minSize": "big"}})").substr(0, 37), "compression.minSize: expected a size ");
  EXPECT_EQ(error(R"({"listen": 1, "routes": [{"app": "app.js"}], "thread": 2})"),
            R"(thread: unknown key (did you mean "threads"?))");
  EXPECT_EQ(error(R"({"threads": 0, "listen": 1, "routes": [{"app": "app.js"}]})"),
            "threads: expected a whole number 1-1024, got 0");
  EXPECT_EQ(error(R"({"threads": 2.5, "listen": 1, "routes": [{"app": "app.js"}]})"),
            "threads: expected a whole number 1-1024, got 2.5");
  EXPECT_EQ(error(R"({"sticky": "yes", "listen": 1, "routes": [{"app": "app.js"}]})"),
            R"(sticky: expected true or false, got "yes")");
  EXPECT_EQ(error(R"({"io": "kqueue", "listen": 1, "routes": [{"app": "app.js"}]})"),
            R"(io: expected one of "auto", "uring", "epoll", got "kqueue")");
}

TEST_F(ConfigFile, ListenErrors) {
  auto with = [&](const std::string& listen) {
    return error(R"({"listen": )" + listen + R"(, "routes": [{"app": "app.js"}]})");
  };
  EXPECT_EQ(with("[]"), "listen: expected at least one listener");
  EXPECT_EQ(with("\"8080\""), R"(listen: expected a port number or an array of listeners, got "8080")");
  EXPECT_EQ(with("70000"), "listen: expected a whole number 0-65535, got 70000");
  EXPECT_EQ(with("[80, -1]"), "listen[1]: expected a whole number 0-65535, got -1");
  EXPECT_EQ(with("[true]"), "listen[0]: expected a port number or an object { host, port, tls, http2 }, got true");
  EXPECT_EQ(with(R"([{"host": "::1"}])"), "listen[0].port: required");
  EXPECT_EQ(with(R"([{"port": 1, "hots": "x"}])"), R"(listen[0].hots: unknown key (did you mean "host"?))");
  EXPECT_EQ(with(R"([{"port": 1, "host": ""}])"), R"(listen[0].host: expected a non-empty string, got "")");
  EXPECT_EQ(with(R"([{"port": 1, "host": "no-such-host.invalid"}])").rfind(
                R"(listen[0].host: cannot resolve "no-such-host.invalid": )", 0),
            0u);
  EXPECT_EQ(with(R"([8080, {"host": "127.0.0.1", "port": 8080}])"),
            "listen[1]: 127.0.0.1 port 8080 is already listed at listen[0]");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"key": "key.pem"}}])"),
            "listen[0].tls.cert: required (a PEM certificate chain file)");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"cert": "cert.pem"}}])"),
            "listen[0].tls.key: required (the certificate's PEM private key file)");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"cert": "missing.pem", "key": "key.pem"}}])"),
            "listen[0].tls.cert: missing.pem: no such file");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"cert": "public", "key": "key.pem"}}])"),
            "listen[0].tls.cert: public: is a directory, not a file");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"cert": "cert.pem", "key": "key.pem", "ocsp": "o.der"}}])"),
            "listen[0].tls.ocsp: o.der: no such file");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"cert": "cert.pem", "key": "key.pem", "certificates": []}}])"),
            "listen[0].tls: give either cert/key/ocsp or certificates: [{ cert, key, ocsp }, ...], not both");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"certificates": []}}])"),
            "listen[0].tls.certificates: expected at least one certificate");
  EXPECT_EQ(with(R"([{"port": 1, "tls": {"certificates": [{"cert": "cert.pem", "key": "nokey.pem"}]}}])"),
            "listen[0].tls.certificates[0].key: nokey.pem: no such file");
  EXPECT_EQ(with(R"([{"port": 1, "tls": true}])"), "listen[0].tls: expected an object, got true");
}

TEST_F(ConfigFile, RouteErrors) {
  EXPECT_EQ(routeError("\"/\""), R"(routes[0]: expected an object, got "/")");
  EXPECT_EQ(routeError("{}"), "routes[0]: expected one of static, proxy, app or redirect (what the route does)");
  EXPECT_EQ(routeError(R"({"app": "app.js", "static": "public"})"),
            "routes[0]: expected only one of static, proxy, app or redirect");
  EXPECT_EQ(routeError(R"({"match": "api", "app": "app.js"})"),
            R"(routes[0].match: expected a path starting with '/', got "api")");
  EXPECT_EQ(routeError(R"({"match": "/a b", "app": "app.js"})"),
            R"(routes[0].match: expected a path without spaces, control characters, '?' or '#', got "/a b")");
  EXPECT_EQ(routeError(R"({"match": 1, "app": "app.js"})"), "routes[0].match: expected a string, got 1");
  EXPECT_EQ(routeError(R"({"exact": "yes", "app": "app.js"})"), R"(routes[0].exact: expected true or false, got "yes")");
  EXPECT_EQ(routeError(R"({"host": "a.com:80", "app": "app.js"})"),
            R"(routes[0].host: expected a host name without port or path (e.g. "example.com"), got "a.com:80")");
  EXPECT_EQ(routeError(R"({"methods": "GET", "app": "app.js"})"),
            R"(routes[0].methods: expected an array of methods like ["GET", "POST"], got "GET")");
  EXPECT_EQ(routeError(R"({"methods": [], "app": "app.js"})"),
            "routes[0].methods: expected at least one method (leave the key out for any method)");
  EXPECT_EQ(routeError(R"({"methods": ["GET", "NOT A TOKEN"], "app": "app.js"})"),
            R"(routes[0].methods[1]: expected a method name like "GET", got "NOT A TOKEN")");
  EXPECT_EQ(routeError(R"({"app": "missing.js"})"), "routes[0].app: missing.js: no such file");
  EXPECT_EQ(routeError(R"({"app": ""})"), R"(routes[0].app: expected a non-empty string, got "")");
  EXPECT_EQ(routeError(R"({"handler": "x", "app": "app.js"})"),
            "routes[0].handler: unknown key (known keys: match exact host methods static proxy app redirect headers rateLimit)");
  EXPECT_EQ(routeError(R"({"statc": "public"})"), R"(routes[0].statc: unknown key (did you mean "static"?))");
  // static
  EXPECT_EQ(routeError(R"({"static": {"list": true}})"), "routes[0].static.root: required (the directory to serve)");
  EXPECT_EQ(routeError(R"({"static": {"root": "app.js"}})"), "routes[0].static.root: app.js: not a directory");
  EXPECT_EQ(routeError(R"({"static": "nope"})"), "routes[0].static: nope: no such directory");
  EXPECT_EQ(routeError(R"({"static": 5})"),
            "routes[0].static: expected an object { root, list, index, dotfiles, fallback, notFound } or a directory, got 5");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "list": 1}})"),
            "routes[0].static.list: expected true or false, got 1");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "index": "a/b.html"}})"),
            R"(routes[0].static.index: expected a file name without '/', got "a/b.html")");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "dotfiles": true}})"),
            R"(routes[0].static.dotfiles: expected one of "ignore", "deny", "allow", got true)");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "indx": "a.html"}})"),
            R"(routes[0].static.indx: unknown key (did you mean "index"?))");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "fallback": "index.html"}})"),
            "routes[0].static.fallback: index.html: no such file under " + (dir_ / "public").string());
  EXPECT_EQ(routeError(R"({"static": {"notFound": "404.html", "root": "public"}})"),
            "routes[0].static.notFound: 404.html: no such file under " + (dir_ / "public").string());
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "fallback": "../app.js"}})"),
            R"(routes[0].static.fallback: expected a file's path under the root, like 'index.html', got "../app.js")");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "notFound": "/"}})"),
            R"(routes[0].static.notFound: expected a file's path under the root, like 'index.html', got "/")");
  EXPECT_EQ(routeError(R"({"static": {"root": "public", "fallback": true}})"),
            "routes[0].static.fallback: expected a string, got true");
}

TEST_F(ConfigFile, StaticFallbackAndNotFoundPages) {
  write("public/index.html", "<p>app</p>");
  write("public/errors/404.html", "<p>404</p>");
  ServerConfig config;
  std::string err;
  ASSERT_TRUE(load(R"({"listen": 8080, "routes": [{"static": {"root": "public", "fallback": "/index.html",
                      "notFound": "errors/404.html"}}]})", config, err)) << err;
  const StaticOptions& st = config.site->routes[0].statics;
  EXPECT_EQ(st.fallback, "index.html");
  EXPECT_EQ(st.notFound, "errors/404.html");
}

TEST_F(ConfigFile, ProxyErrors) {
  auto proxy = [&](const std::string& body) { return routeError(R"({"proxy": )" + body + "}"); };
  EXPECT_EQ(proxy("{}"), "routes[0].proxy.upstreams: required (e.g. upstreams: ['127.0.0.1:9001'])");
  EXPECT_EQ(proxy(R"({"upstreams": []})"), "routes[0].proxy.upstreams: expected at least one upstream");
  EXPECT_EQ(proxy(R"({"upstreams": "127.0.0.1:1"})"),
            R"(routes[0].proxy.upstreams: expected an array of "host:port" or { address, weight }, got "127.0.0.1:1")");
  EXPECT_EQ(proxy(R"({"upstreams": ["127.0.0.1"]})"),
            R"(routes[0].proxy.upstreams[0]: expected "host:port" (IPv6 as "[::1]:port"), got "127.0.0.1")");
  EXPECT_EQ(proxy(R"({"upstreams": ["::1:80"]})"),
            R"(routes[0].proxy.upstreams[0]: expected "host:port" (IPv6 as "[::1]:port"), got "::1:80")");
  EXPECT_EQ(proxy(R"({"upstreams": ["[::1]"]})"),
            R"(routes[0].proxy.upstreams[0]: expected "host:port" (IPv6 as "[::1]:port"), got "[::1]")");
  EXPECT_EQ(proxy(R"({"upstreams": ["127.0.0.1:0"]})"),
            R"(routes[0].proxy.upstreams[0]: "127.0.0.1:0": expected a port 1-65535 after the last ':')");
  EXPECT_EQ(proxy(R"({"upstreams": ["127.0.0.1:http"]})"),
            R"(routes[0].proxy.upstreams[0]: "127.0.0.1:http": expected a port 1-65535 after the last ':')");
  EXPECT_EQ(proxy(R"({"upstreams": ["127.0.0.1:1", "no-such-host.invalid:80"]})").rfind(
                R"(routes[0].proxy.upstreams[1]: cannot resolve "no-such-host.invalid": )", 0),
            0u);
  EXPECT_EQ(proxy(R"({"upstreams": [{"weight": 2}]})"), R"(routes[0].proxy.upstreams[0].address: required ("host:port"))");
  EXPECT_EQ(proxy(R"({"upstreams": [{"address": "127.0.0.1:1", "weight": 0}]})"),
            "routes[0].proxy.upstreams[0].weight: expected a whole number 1-1000, got 0");
  EXPECT_EQ(proxy(R"({"upstreams": [{"address": "127.0.0.1:1", "wieght": 2}]})"),
            R"(routes[0].proxy.upstreams[0].wieght: unknown key (did you mean "weight"?))");
  EXPECT_EQ(proxy(R"({"upstreams": [9001]})"),
            R"(routes[0].proxy.upstreams[0]: expected "host:port" or { address, weight }, got 9001)");
  std::string u = R"("upstreams": ["127.0.0.1:1"], )";
  EXPECT_EQ(proxy("{" + u + R"("connectTimeout": "soon"})"),
            R"(routes[0].proxy.connectTimeout: expected a duration from 1ms to 24h (milliseconds, or a string like "500ms", "10s", "2m"), got "soon")");
  EXPECT_EQ(proxy("{" + u + R"("readTimeout": 0})").rfind("routes[0].proxy.readTimeout: expected a duration", 0), 0u);
  EXPECT_EQ(proxy("{" + u + R"("sendTimeout": "2h"})").rfind("routes[0].proxy.sendTimeout: expected a duration", 0), 0u);
  EXPECT_EQ(proxy("{" + u + R"("keepalive": {"maxIdle": -1}})"),
            "routes[0].proxy.keepalive.maxIdle: expected a whole number 0-100000, got -1");
  EXPECT_EQ(proxy("{" + u + R"("keepalive": {"idle": "1s"}})"),
            "routes[0].proxy.keepalive.idle: unknown key (known keys: maxIdle idleTimeout maxRequests)");
  EXPECT_EQ(proxy("{" + u + R"("keepalive": 5})"),
            "routes[0].proxy.keepalive: expected an object { maxIdle, idleTimeout, maxRequests } or false, got 5");
  EXPECT_EQ(proxy("{" + u + R"("retries": 1.5})"), "routes[0].proxy.retries: expected a whole number 0-100, got 1.5");
  EXPECT_EQ(proxy("{" + u + R"("maxFails": "1"})"), R"(routes[0].proxy.maxFails: expected a whole number 0-1000, got "1")");
  EXPECT_EQ(proxy("{" + u + R"("stripPrefix": "yes"})"),
            R"(routes[0].proxy.stripPrefix: expected true or false, got "yes")");
  EXPECT_EQ(proxy("{" + u + R"("host": "a b"})"),
            R"(routes[0].proxy.host: expected a Host header value like "backend.internal", got "a b")");
  EXPECT_EQ(proxy("{" + u + R"("healthCheck": {"path": "health"}})"),
            R"(routes[0].proxy.healthCheck.path: expected a path starting with '/', got "health")");
  EXPECT_EQ(proxy("{" + u + R"("healthCheck": {"interval": "often"}})").rfind(
                "routes[0].proxy.healthCheck.interval: expected a duration", 0),
            0u);
  EXPECT_EQ(proxy("{" + u + R"("healthCheck": "/health"})"),
            R"(routes[0].proxy.healthCheck: expected an object { path, interval, timeout } or true/false, got "/health")");
  EXPECT_EQ(proxy("{" + u + R"("balance": 1})"),
            R"(routes[0].proxy.balance: expected one of "round_robin", "least_conn", "weighted", got 1)");
  EXPECT_EQ(proxy("{" + u + R"("timeout": "1s"})").rfind("routes[0].proxy.timeout: unknown key", 0), 0u);
}

TEST_F(ConfigFile, LimitsAndLoggingErrors) {
  auto with = [&](const std::string& extra) {
    return error(R"({"listen": 1, "routes": [{"app": "app.js"}], )" + extra + "}");
  };
  EXPECT_EQ(with(R"("limits": {"bodyBytes": "8q"})"),
            R"(limits.bodyBytes: expected a size from 0 to 1099511627776 bytes (a number, or a string like "8k", "1m"), got "8q")");
  EXPECT_EQ(with(R"("limits": {"requestLine": 10})").rfind("limits.requestLine: expected a size from 64 to", 0), 0u);
  EXPECT_EQ(with(R"("limits": {"headerBytes": -5})").rfind("limits.headerBytes: expected a size", 0), 0u);
  EXPECT_EQ(with(R"("limits": {"headers": 0})"), "limits.headers: expected a whole number 1-100000, got 0");
  EXPECT_EQ(with(R"("limits": {"idleTimeout": "forever"})").rfind("limits.idleTimeout: expected a duration", 0), 0u);
  EXPECT_EQ(with(R"("limits": {"maxRequests": 0})"), "limits.maxRequests: expected a whole number 1-100000000, got 0");
  EXPECT_EQ(with(R"("limits": {"bodybytes": 1})"), R"(limits.bodybytes: unknown key (did you mean "bodyBytes"?))");
  EXPECT_EQ(with(R"("limits": 5)"), "limits: expected an object, got 5");
  EXPECT_EQ(with(R"("logging": {"access": "nodir/access.log"})"),
            "logging.access: nodir/access.log: no such directory " + (dir_ / "nodir").string());
  EXPECT_EQ(with(R"("logging": {"access": "logs"})"), "logging.access: logs: is a directory, not a file");
  EXPECT_EQ(with(R"("logging": {"metrics": "metrics"})"),
            R"(logging.metrics: expected a path starting with '/' (e.g. "/metrics"), got "metrics")");
  EXPECT_EQ(with(R"("logging": {"acess": "-"})"), R"(logging.acess: unknown key (did you mean "access"?))");
}

TEST_F(ConfigFile, FileErrors) {
  ServerConfig config;
  std::string err;
  // Syntax errors name the file, line and column.
  std::string path = write("kuai.config.json", "{\n  \"listen\": 8080,\n  \"routes\": [,]\n}\n");
  EXPECT_FALSE(loadConfigFile(path, config, err));
  EXPECT_EQ(err, path + ":3:14: unexpected ',' (expected a JSON value)");
  EXPECT_FALSE(loadConfigFile((dir_ / "missing.json").string(), config, err));
  EXPECT_EQ(err, (dir_ / "missing.json").string() + ": cannot read: No such file or directory");
  EXPECT_FALSE(loadConfigFile((dir_ / "missing.js").string(), config, err));
  EXPECT_EQ(err, (dir_ / "missing.js").string() + ": cannot read: No such file or directory");
  path = write("kuai.conf", kMinimal);
  EXPECT_FALSE(loadConfigFile(path, config, err));
  EXPECT_EQ(err, path + ": unknown kind of config file (expected a name ending in .json, .js, .cjs or .mjs)");
  fs::create_directories(dir_ / "d.json");
  EXPECT_FALSE(loadConfigFile((dir_ / "d.json").string(), config, err));
  EXPECT_EQ(err, (dir_ / "d.json").string() + ": is a directory, not a config file");
}

TEST_F(ConfigFile, ScriptsNeedNode) {
  std::string path = write("kuai.config.js", "module.exports = {};\n");
  const char* old = std::getenv("KUAI_NODE_BINARY");
  std::string saved = old ? old : "";
  std::string missing = (dir_ / "no-node").string();
  ::setenv("KUAI_NODE_BINARY", missing.c_str(), 1);
  ServerConfig config;
  std::string err;
  EXPECT_FALSE(loadConfigFile(path, config, err));
  EXPECT_EQ(err, "cannot evaluate " + path + ": Node.js not found at " + missing +
                     " (run tools/setup, or use a .json config)");
  ::unsetenv("KUAI_NODE_BINARY");
  std::string beside = nodeBinaryPath();  // in this test binary's runfiles, or ../lib/kuai
  EXPECT_EQ(beside.substr(beside.size() - 9), "/bin/node");
  if (old) ::setenv("KUAI_NODE_BINARY", saved.c_str(), 1);
}

TEST_F(ConfigFile, FailureLeavesTheConfigAlone) {
  ServerConfig config;
  config.threads = 7;
  config.port = 1234;
  std::string err;
  EXPECT_FALSE(load(R"({"threads": 2, "listen": 80, "routes": [{"app": "nope.js"}]})", config, err));
  EXPECT_EQ(config.threads, 7);
  EXPECT_EQ(config.port, 1234);
  EXPECT_FALSE(config.site);
}

}  // namespace
}  // namespace kuai::server
