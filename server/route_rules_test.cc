#include "server/route_rules.h"

#include <gtest/gtest.h>

#include <string>

namespace kuai::server {
namespace {

TEST(HeaderRules, SetReplacesAppendAddsRemoveDrops) {
  HeaderRules r;
  r.set = {{"Cache-Control", "no-cache"}, {"Content-Type", "text/x"}};
  r.append = {{"Vary", "Origin"}};
  r.remove = {"x-powered-by"};
  std::string out;
  bool server = true;
  r.apply("Content-Type: text/plain\r\nX-Powered-By: Express\r\ncache-control: max-age=5\r\nVary: Accept\r\nETag: \"1\"\r\n",
          out, server);
  EXPECT_EQ(out, "Vary: Accept\r\nETag: \"1\"\r\nCache-Control: no-cache\r\nContent-Type: text/x\r\nVary: Origin\r\n");
  EXPECT_TRUE(server);
  // Server: removed or set, the protocol's own goes.
  HeaderRules noServer;
  noServer.remove = {"server"};
  noServer.apply("", out, server);
  EXPECT_FALSE(server);
  EXPECT_EQ(out, "");
  server = true;
  HeaderRules setServer;
  setServer.set = {{"Server", "edge"}};
  setServer.apply("Server: upstream\r\n", out, server);
  EXPECT_FALSE(server);
  EXPECT_EQ(out, "Server: edge\r\n");
  // A last line without CRLF keeps its field.
  server = true;
  setServer.apply("X-A: 1", out, server);
  EXPECT_EQ(out, "X-A: 1\r\nServer: edge\r\n");
}

parser::Request request(std::string_view target, std::string_view host) {
  parser::Request req;
  req.target = target;
  req.host = host;
  return req;
}

TEST(Redirect, Substitutions) {
  std::string out;
  ASSERT_TRUE(RedirectHandler::location("https://$host$path$query", request("/a/b?x=1&y=%20", "Example.com:8080"), out));
  EXPECT_EQ(out, "https://Example.com/a/b?x=1&y=%20");
  ASSERT_TRUE(RedirectHandler::location("https://example.com$path$query", request("/", "www.example.com"), out));
  EXPECT_EQ(out, "https://example.com/");
  ASSERT_TRUE(RedirectHandler::location("$host$host", request("/", "[::1]:80"), out));
  EXPECT_EQ(out, "[::1][::1]");
  ASSERT_TRUE(RedirectHandler::location("/x?$query", request("/p?", "h"), out));
  EXPECT_EQ(out, "/x??");
  ASSERT_TRUE(RedirectHandler::location("/cost$5$pathx$queryy$", request("/p#f", "h"), out));
  EXPECT_EQ(out, "/cost$5/pxy$");  // unknown $names stay; no query is empty
  ASSERT_TRUE(RedirectHandler::location("/fixed", request("/p", ""), out));
  EXPECT_EQ(out, "/fixed");
  EXPECT_FALSE(RedirectHandler::location("https://$host/", request("/p", ""), out));
}

TEST(RateLimiter, BurstThenRate) {
  RateLimiter l(RateLimitSpec{10, 3});
  uint32_t retry = 0;
  uint64_t t = 1000;
  EXPECT_TRUE(l.admit("a", t, retry));
  EXPECT_TRUE(l.admit("a", t, retry));
  EXPECT_TRUE(l.admit("a", t, retry));
  EXPECT_FALSE(l.admit("a", t, retry));
  EXPECT_EQ(retry, 1u);
  EXPECT_TRUE(l.admit("b", t, retry));  // another client: its own bucket
  EXPECT_FALSE(l.admit("a", t + 50, retry));
  EXPECT_TRUE(l.admit("a", t + 100, retry));  // 10/s: one token per 100 ms
  EXPECT_FALSE(l.admit("a", t + 150, retry));
  EXPECT_TRUE(l.admit("a", t + 10'000, retry));  // refilled, but only to the burst
  EXPECT_TRUE(l.admit("a", t + 10'000, retry));
  EXPECT_TRUE(l.admit("a", t + 10'000, retry));
  EXPECT_FALSE(l.admit("a", t + 10'000, retry));
}

TEST(RateLimiter, SlowRateRetryAfterAndDefaultBurst) {
  RateLimiter l(RateLimitSpec{0.2, 0});  // one per 5 s; burst defaults to max(1, rate)
  uint32_t retry = 0;
  EXPECT_TRUE(l.admit("a", 0, retry));
  EXPECT_FALSE(l.admit("a", 0, retry));
  EXPECT_EQ(retry, 5u);
  EXPECT_FALSE(l.admit("a", 2000, retry));
  EXPECT_EQ(retry, 3u);
  EXPECT_TRUE(l.admit("a", 5000, retry));
}

TEST(RateLimiter, ClientsAreBounded) {
  RateLimiter l(RateLimitSpec{1, 1});
  uint32_t retry = 0;
  for (size_t i = 0; i < RateLimiter::kMaxClients + 5000; ++i) {
    l.admit("10.0." + std::to_string(i), i / 1000, retry);  // all within a few ms
  }
  EXPECT_LE(l.clients(), RateLimiter::kMaxClients);
  EXPECT_GT(l.clients(), RateLimiter::kMaxClients / 2);
  // Much later every bucket is full again: they all go at the next prune.
  for (size_t i = 0; i < 10; ++i) l.admit("x" + std::to_string(i), 1'000'000, retry);
  EXPECT_LE(l.clients(), RateLimiter::kMaxClients);
}

}  // namespace
}  // namespace kuai::server
