// UpstreamPool's choices, without sockets: balancing (round-robin, smooth
// weighted, least-connections), passive health (down after maxFails, back
// after failTimeout or a success) and the retry mask. A real (epoll) reactor
// hosts the pool; nothing is connected.
#include "server/upstream_pool.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "server/config.h"

namespace kuai::server {
namespace {

UpstreamSpec upstream(const std::string& name, uint32_t weight = 1) {
  UpstreamSpec u;
  u.name = name;
  u.weight = weight;
  auto* a = reinterpret_cast<sockaddr_in*>(&u.addr);
  a->sin_family = AF_INET;
  a->sin_port = htons(9);
  ::inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
  u.addrLen = sizeof(sockaddr_in);
  return u;
}

struct Fixture {
  ServerConfig config;
  std::unique_ptr<Reactor> reactor;
  std::shared_ptr<UpstreamPool> route;

  Fixture(Balance balance, std::vector<UpstreamSpec> ups, uint32_t maxFails = 1) {
    reactor = makeReactor(IoBackend::kEpoll, 0, config);
    auto spec = std::make_shared<ProxySpec>();
    spec->upstreams = std::move(ups);
    spec->balance = balance;
    spec->maxFails = maxFails;
    spec->failTimeoutMs = 10'000;
    route = UpstreamPool::create(*reactor, spec, "/");
  }
  std::string pick(uint64_t tried = 0) {
    UpstreamPool::Upstream* u = route->pick(tried);
    return u ? u->spec->name : "-";
  }
};

TEST(ProxyBalance, RoundRobinTakesTurns) {
  Fixture f(Balance::kRoundRobin, {upstream("a"), upstream("b"), upstream("c")});
  std::string seq;
  for (int i = 0; i < 6; ++i) seq += f.pick();
  EXPECT_EQ(seq, "abcabc");
}

TEST(ProxyBalance, SmoothWeightedSpreadsTheHeavyOne) {
  Fixture f(Balance::kWeighted, {upstream("a", 5), upstream("b", 1), upstream("c", 1)});
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += f.pick();
  EXPECT_EQ(seq, "aabacaa");  // 5:1:1, never five a's in a row
  std::map<std::string, int> count;
  for (int i = 0; i < 700; ++i) ++count[f.pick()];
  EXPECT_EQ(count["a"], 500);
  EXPECT_EQ(count["b"], 100);
  EXPECT_EQ(count["c"], 100);
}

TEST(ProxyBalance, RetriesSkipWhatWasTried) {
  Fixture f(Balance::kRoundRobin, {upstream("a"), upstream("b"), upstream("c")});
  EXPECT_EQ(f.pick(0b011), "c");
  EXPECT_EQ(f.pick(0b101), "b");
  EXPECT_EQ(f.pick(0b111), "-");  // every one tried: none left
}

TEST(ProxyHealth, FailuresMarkDownThenSuccessBringsBack) {
  Fixture f(Balance::kRoundRobin, {upstream("a"), upstream("b")}, /*maxFails=*/2);
  UpstreamPool::Upstream* a = f.route->pick(0b10);  // "a"
  ASSERT_EQ(a->spec->name, "a");
  f.route->failed(a);
  auto spread = [&f] {
    std::map<std::string, int> n;
    for (int i = 0; i < 4; ++i) ++n[f.pick()];
    return n;
  };
  using Counts = std::map<std::string, int>;
  EXPECT_EQ(spread(), (Counts{{"a", 2}, {"b", 2}})) << "one failure of two: still in the rotation";
  f.route->failed(a);  // the second in a row: down for failTimeout
  EXPECT_EQ(spread(), (Counts{{"b", 4}}));
  EXPECT_EQ(a->counters->down.load(), 1);
  f.route->succeeded(a);
  EXPECT_EQ(spread(), (Counts{{"a", 2}, {"b", 2}}));
  EXPECT_EQ(a->counters->failures.load(), 2u);
}

TEST(ProxyHealth, AllDownStillTriesOneRatherThanRefuse) {
  Fixture f(Balance::kRoundRobin, {upstream("a"), upstream("b")});
  f.route->failed(f.route->pick(0b10));
  f.route->failed(f.route->pick(0b01));
  EXPECT_NE(f.pick(), "-") << "a first try goes to the upstream whose mark ends first";
  EXPECT_EQ(f.pick(0b10), "-") << "a retry never goes to a down upstream";
}

TEST(ProxyBalance, LeastConnectionsPrefersTheIdle) {
  Fixture f(Balance::kLeastConn, {upstream("a"), upstream("b", 2)});
  UpstreamPool::Upstream* a = f.route->pick(0b10);
  UpstreamPool::Upstream* b = f.route->pick(0b01);
  a->active = 1;
  EXPECT_EQ(f.pick(), "b");
  b->active = 1;  // b has twice the weight: 1 of 2 beats a's 1 of 1
  EXPECT_EQ(f.pick(), "b");
  b->active = 3;
  EXPECT_EQ(f.pick(), "a");
}

}  // namespace
}  // namespace kuai::server
