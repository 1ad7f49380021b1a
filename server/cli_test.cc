#include "server/cli.h"

#include <gtest/gtest.h>

#include <set>

namespace kuai::server {
namespace {

CliResult parse(std::vector<std::string> args) { return parseCommandLine(args); }

TEST(Cli, ServeWithDefaults) {
  CliResult r = parse({"serve", "public"});
  ASSERT_EQ(r.action, CliResult::Action::kServe) << r.error;
  EXPECT_EQ(r.config.statics.root, "public");
  EXPECT_EQ(r.config.port, 8080);
  EXPECT_EQ(r.config.host, "127.0.0.1");
  EXPECT_EQ(r.config.threads, 0);
  EXPECT_EQ(r.config.io, IoBackend::kAuto);
  EXPECT_EQ(r.config.limits.maxRequestLine, 8192u);
  EXPECT_EQ(r.config.limits.maxFieldSize, 8192u);
  EXPECT_EQ(r.config.limits.maxHeaderBytes, 32768u);
  EXPECT_EQ(r.config.limits.maxHeaders, 100u);
  EXPECT_EQ(r.config.limits.maxBodyBytes, 1048576u);
  EXPECT_EQ(r.config.timeouts.headerMs, 10000u);
  EXPECT_EQ(r.config.timeouts.idleMs, 10000u);
  EXPECT_EQ(r.config.timeouts.bodyMs, 30000u);
  EXPECT_EQ(r.config.maxRequestsPerConnection, 1000u);
}

TEST(Cli, AllOptions) {
  CliResult r = parse({"serve", "d", "--port", "0", "--host", "::1", "--threads", "3", "--io",
                       "epoll", "--list", "--respond", "/hello=Hello, World!",
                       "--max-request-line", "4k", "--max-field-size", "2k",
                       "--max-header-bytes", "16k", "--max-headers", "50", "--max-body", "2m",
                       "--header-timeout", "1s", "--idle-timeout", "500ms", "--body-timeout",
                       "2", "--max-requests", "7", "--shutdown-timeout", "3s", "--fallback", "/index.html",
                       "--not-found=errors/404.html", "--sticky"});
  ASSERT_EQ(r.action, CliResult::Action::kServe) << r.error;
  const ServerConfig& c = r.config;
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.threads, 3);
  EXPECT_TRUE(c.sticky);
  EXPECT_EQ(c.io, IoBackend::kEpoll);
  EXPECT_TRUE(c.statics.listDirectories);
  ASSERT_EQ(c.responds.size(), 1u);
  EXPECT_EQ(c.responds[0].first, "/hello");
  EXPECT_EQ(c.responds[0].second, "Hello, World!");
  EXPECT_EQ(c.limits.maxRequestLine, 4096u);
  EXPECT_EQ(c.limits.maxFieldSize, 2048u);
  EXPECT_EQ(c.limits.maxHeaderBytes, 16384u);
  EXPECT_EQ(c.limits.maxHeaders, 50u);
  EXPECT_EQ(c.limits.maxBodyBytes, 2u * 1024 * 1024);
  EXPECT_EQ(c.timeouts.headerMs, 1000u);
  EXPECT_EQ(c.timeouts.idleMs, 500u);
  EXPECT_EQ(c.timeouts.bodyMs, 2000u);
  EXPECT_EQ(c.maxRequestsPerConnection, 7u);
  EXPECT_EQ(c.timeouts.shutdownMs, 3000u);
  EXPECT_EQ(c.statics.fallback, "index.html");
  EXPECT_EQ(c.statics.notFound, "errors/404.html");
}

TEST(Cli, HelpAndVersion) {
  EXPECT_EQ(parse({"--help"}).action, CliResult::Action::kHelp);
  EXPECT_EQ(parse({"serve", "x", "-h"}).action, CliResult::Action::kHelp);
  EXPECT_EQ(parse({"--version"}).action, CliResult::Action::kVersion);
  EXPECT_NE(usage().find("kuai serve DIR"), std::string::npos);
}

TEST(Cli, ErrorsSayWhat) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  } cases[] = {
      {{}, "nothing to do"},
      {{"serve"}, "usage"},
      {{"serve", "a", "b"}, "usage"},
      {{"serve", "d", "--max-old-space-size=64"}, "unknown option '--max-old-space-size=64'"},
      {{"serve", "d", "--frobnicate"}, "unknown option '--frobnicate'"},
      {{"serve", "d", "--port"}, "--port needs a value"},
      {{"serve", "d", "--port", "70000"}, "--port"},
      {{"serve", "d", "--port", "12ab"}, "'12ab'"},
      {{"serve", "d", "--threads", "0"}, "--threads"},
      {{"serve", "d", "--io", "kqueue"}, "'kqueue'"},
      {{"serve", "d", "--max-body", "lots"}, "--max-body"},
      {{"serve", "d", "--idle-timeout", "0"}, "--idle-timeout"},
      {{"serve", "d", "--idle-timeout", "5h"}, "'5h'"},
      {{"serve", "d", "--respond", "hello"}, "/path=body"},
      {{"serve", "d", "--fallback", "../x.html"}, "option --fallback: '../x.html' must be a file's path under"},
      {{"serve", "d", "--not-found", "/"}, "option --not-found: '/' must be a file's path under"},
      {{"serve", "d", "--fallback"}, "--fallback needs a value"},
      {{"serve", "d", "--sticky=yes"}, "option --sticky takes no value"},
  };
  for (const Case& c : cases) {
    CliResult r = parse(c.args);
    EXPECT_EQ(r.action, CliResult::Action::kError) << c.needle;
    EXPECT_NE(r.error.find(c.needle), std::string::npos) << r.error << " (wanted " << c.needle << ")";
  }
}

TEST(Cli, ConfigFile) {
  CliResult r = parse({"--config", "kuai.config.js"});
  ASSERT_EQ(r.action, CliResult::Action::kServe) << r.error;
  EXPECT_EQ(r.config.configFile, "kuai.config.js");
  EXPECT_FALSE(r.config.checkConfigOnly);
  EXPECT_FALSE(r.config.serveStatic);
  EXPECT_FALSE(r.config.scriptMode);

  r = parse({"--check-config", "site.json"});
  ASSERT_EQ(r.action, CliResult::Action::kServe) << r.error;
  EXPECT_EQ(r.config.configFile, "site.json");
  EXPECT_TRUE(r.config.checkConfigOnly);

  EXPECT_EQ(parse({"--config", "x.js", "--help"}).action, CliResult::Action::kHelp);
  EXPECT_NE(usage().find("--config FILE"), std::string::npos);
  EXPECT_NE(usage().find("--check-config FILE"), std::string::npos);
}

TEST(Cli, ConfigFileExcludesTheRest) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  } cases[] = {
      {{"--config"}, "--config needs a value"},
      {{"--check-config"}, "--check-config needs a value"},
      {{"--config", ""}, "needs a file name"},
      {{"--config", "a.js", "--config", "b.js"}, "given twice"},
      {{"--config", "a.js", "--check-config", "a.js"}, "cannot be used together"},
      {{"serve", "d", "--config", "a.js"}, "cannot be used with 'serve'"},
      {{"--config", "a.js", "serve", "d"}, "cannot be used with 'serve'"},
      {{"--config", "a.js", "app.js"}, "cannot be used with a script"},
      {{"-e", "1", "--config", "a.js"}, "cannot be used with a script"},
      {{"--config", "a.js", "-e", "1"}, "cannot be used with a script"},
      {{"--config", "a.js", "--frobnicate"}, "unknown option '--frobnicate'"},
      {{"--config", "a.js", "--inspect"}, "for scripts, not --config"},
      {{"--config", "a.js", "--tls-cert", "c.pem"}, "--tls-cert c.pem has no --tls-key"},
  };
  for (const Case& c : cases) {
    CliResult r = parse(c.args);
    EXPECT_EQ(r.action, CliResult::Action::kError) << c.needle;
    EXPECT_NE(r.error.find(c.needle), std::string::npos) << r.error << " (wanted " << c.needle << ")";
  }
  // Options given beside a config file override it (site_config.h).
  CliResult o = parse({"--config", "a.js", "--port=80", "-t", "2", "--io", "epoll", "--max-body", "2m"});
  ASSERT_EQ(o.action, CliResult::Action::kServe) << o.error;
  EXPECT_EQ(o.config.port, 80);
  EXPECT_EQ(o.config.threads, 2);
  EXPECT_EQ(o.config.io, IoBackend::kEpoll);
  EXPECT_EQ(o.config.given, (std::set<std::string>{"--port", "--threads", "--io", "--max-body"}));
  // After a script, --config is one of the script's arguments.
  CliResult r = parse({"app.js", "--config", "x"});
  ASSERT_EQ(r.action, CliResult::Action::kScript) << r.error;
  EXPECT_TRUE(r.config.configFile.empty());
  ASSERT_EQ(r.config.scriptArgs.size(), 2u);
}

TEST(Cli, Sizes) {
  EXPECT_EQ(parseSize("512"), 512u);
  EXPECT_EQ(parseSize("8k"), 8192u);
  EXPECT_EQ(parseSize("8K"), 8192u);
  EXPECT_EQ(parseSize("1m"), 1048576u);
  EXPECT_EQ(parseSize("1g"), 1073741824u);
  EXPECT_FALSE(parseSize(""));
  EXPECT_FALSE(parseSize("k"));
  EXPECT_FALSE(parseSize("-1"));
  EXPECT_FALSE(parseSize("1x"));
  EXPECT_FALSE(parseSize("99999999999999999999"));
}

TEST(Cli, Durations) {
  EXPECT_EQ(parseDurationMs("250ms"), 250u);
  EXPECT_EQ(parseDurationMs("10s"), 10000u);
  EXPECT_EQ(parseDurationMs("3"), 3000u);
  EXPECT_EQ(parseDurationMs("2m"), 120000u);
  EXPECT_FALSE(parseDurationMs("s"));
  EXPECT_FALSE(parseDurationMs("1h"));
  EXPECT_FALSE(parseDurationMs("-5s"));
}

}  // namespace
}  // namespace kuai::server
