// The request path without sockets: HTTP/1.1 sessions, the router and the
// handlers over MemoryReactor's in-memory transports. What a client sends is
// fed in as bytes (whole, or split anywhere); what kuai sends back is read with
// kuai's strict response parser.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server/memory_reactor.h"
#include "server/metrics.h"
#include "server/testing/response_reader.h"
#include "server/testing/test_site.h"

namespace kuai::server {
namespace {

namespace fs = std::filesystem;
using testing::ReadResponse;
using testing::ResponseReader;
using testing::withoutDate;

// A handler answering when the test says so: it keeps each exchange, records
// what the exchange's listener hears, and takes the body or not.
class TestHandler final : public Handler {
 public:
  struct Call final : ExchangeListener {
    std::string method, target, body;
    std::shared_ptr<Exchange> ex;
    bool bodyEnded = false, aborted = false;
    int drains = 0;
    void onBody(std::string_view chunk) override { body.append(chunk); }
    void onBodyEnd() override { bodyEnded = true; }
    void onAbort() override { aborted = true; }
    void onDrain() override { ++drains; }
  };

  explicit TestHandler(bool takesBody = true) : takesBody_(takesBody) {}
  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override {
    auto call = std::make_unique<Call>();
    call->method.assign(req.method);
    call->target.assign(req.target);
    call->ex = ex;
    ex->setListener(call.get());
    calls.push_back(std::move(call));
    if (upgradeAtOnce && req.upgrade) {
      ex->acceptUpgrade("Upgrade: test\r\nConnection: Upgrade\r\n");
      return;
    }
    if (answerAtOnce) {
      ex->writeHead(200, {}, "Content-Type: text/plain\r\n", 3);
      ex->write("ok\n");
      ex->end();
    }
  }
  bool takesBody() const override { return takesBody_; }
  bool answersContinue() const override { return answersContinue_; }
  void onConnectionClose(uint64_t id, uint64_t, uint64_t) override { closedConnections.push_back(id); }

  std::vector<std::unique_ptr<Call>> calls;
  std::vector<uint64_t> closedConnections;
  bool answerAtOnce = false;
  bool upgradeAtOnce = false;  // accept an upgrade as its head arrives
  bool answersContinue_ = false;

 private:
  bool takesBody_;
};

// The complete final responses in `bytes`, which must parse as answers to
// `expected` requests (`heads`: which of them are HEAD).
std::vector<ReadResponse> readResponses(std::string_view bytes, size_t expected, std::vector<bool> heads = {}) {
  ResponseReader reader;
  for (size_t i = 0; i < expected; ++i) reader.expect(i < heads.size() && heads[i]);
  EXPECT_TRUE(reader.feed(bytes)) << reader.error() << "\n" << bytes;
  std::vector<ReadResponse> out;
  for (ReadResponse& r : reader.responses()) {
    if (r.complete && (r.status < 100 || r.status >= 200)) out.push_back(std::move(r));
  }
  return out;
}

constexpr char kStaticText[] = "hello from a static file\n";

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kuai-pipeline-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    write("a.txt", kStaticText);
    big_.resize(300 * 1024);
    for (size_t i = 0; i < big_.size(); ++i) big_[i] = char('a' + (i * 7 + i / 1000) % 26);
    write("big.bin", big_);  // beyond the memory cache: sent as a file range

    auto site = testing::routeKindsSite(root_, "/static/");
    site->logging.metricsPath = "/metrics";
    config_.site = site;
    config_.timeouts.headerMs = 2'000;
    config_.timeouts.idleMs = 3'000;
    config_.timeouts.bodyMs = 4'000;
    config_.timeouts.sendMs = 6'000;
    config_.limits.maxBodyBytes = 64 * 1024;
  }

  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& name, const std::string& bytes) {
    std::ofstream(root_ + "/" + name, std::ios::binary) << bytes;
  }

  MemoryReactor& reactor() {
    if (!reactor_) reactor_ = std::make_unique<MemoryReactor>(config_);
    return *reactor_;
  }

  // Sends `requests` on a new connection in one piece and parses the answer;
  // `heads`: which of the requests are HEAD.
  std::vector<ReadResponse> exchange(const std::string& requests, size_t expected,
                                     std::vector<bool> heads = {}, uint64_t* connOut = nullptr) {
    MemoryReactor& r = reactor();
    uint64_t conn = r.accept();
    if (connOut) *connOut = conn;
    r.send(conn, requests);
    auto rs = readResponses(r.received(conn), expected, heads);
    EXPECT_EQ(rs.size(), expected) << r.received(conn);
    rs.resize(expected);  // indexing a missing one fails the test, not the process
    return rs;
  }

  ServerConfig config_;
  std::unique_ptr<MemoryReactor> reactor_;
  std::string root_;
  std::string big_;
};

const char kGetFixed[] = "GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n";

TEST_F(PipelineTest, PipelinedRequestsAreAnsweredInOrderOnOneConnection) {
  uint64_t conn;
  auto rs = exchange(std::string(kGetFixed) +
                         "GET /static/a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                         "HEAD /static/a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
                     4, {false, false, false, true}, &conn);
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_EQ(rs[0].body, testing::kFixedBody);
  EXPECT_EQ(rs[1].status, 200);
  EXPECT_EQ(rs[1].body, kStaticText);
  EXPECT_FALSE(rs[1].header("ETag").empty());
  EXPECT_EQ(rs[2].status, 404);
  EXPECT_EQ(rs[2].body, "404 Not Found\n");
  EXPECT_EQ(rs[3].status, 200);
  EXPECT_EQ(rs[3].header("Content-Length"), std::to_string(sizeof(kStaticText) - 1));
  EXPECT_TRUE(rs[3].body.empty());
  for (const ReadResponse& r : rs) {
    EXPECT_EQ(r.header("Server"), "kuai");
    EXPECT_TRUE(r.has("Date"));
    EXPECT_TRUE(r.keepAlive);
  }
  EXPECT_FALSE(reactor().closed(conn));
}

// The same bytes give the same answer however the network cuts them.
TEST_F(PipelineTest, SplittingTheInputAnywhereChangesNothing) {
  const std::string input = std::string(kGetFixed) +
                            "POST /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                            "GET /static/a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
                            "GET /static/big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-299\r\n\r\n"
                            "GET /app/x HTTP/1.1\r\nHost: t\r\n\r\n"
                            "GET /nope HTTP/1.0\r\n\r\n";
  MemoryReactor whole(config_);
  uint64_t a = whole.accept();
  whole.send(a, input);
  MemoryReactor bytewise(config_);
  uint64_t b = bytewise.accept();
  for (char c : input) bytewise.send(b, std::string_view(&c, 1));
  MemoryReactor halves(config_);
  uint64_t h = halves.accept();
  for (size_t at = 0; at < input.size(); at += 37) halves.send(h, std::string_view(input).substr(at, 37));

  ResponseReader reader;
  for (int i = 0; i < 6; ++i) reader.expect();
  ASSERT_TRUE(reader.feed(whole.received(a))) << reader.error();
  ASSERT_TRUE(reader.finish()) << reader.error();
  ASSERT_EQ(reader.finals(), 6u);
  auto& rs = reader.responses();
  EXPECT_EQ(rs[1].status, 405);
  EXPECT_EQ(rs[2].body, kStaticText);
  EXPECT_EQ(rs[3].status, 206);
  EXPECT_EQ(rs[3].body, big_.substr(100, 200));
  EXPECT_EQ(rs[4].status, 503);  // an app route whose script is not loaded here
  EXPECT_EQ(rs[5].status, 404);
  EXPECT_TRUE(whole.writeShut(a));  // HTTP/1.0 without keep-alive

  EXPECT_EQ(withoutDate(bytewise.received(b)), withoutDate(whole.received(a)));
  EXPECT_EQ(withoutDate(halves.received(h)), withoutDate(whole.received(a)));
  EXPECT_TRUE(bytewise.writeShut(b));
  EXPECT_TRUE(halves.writeShut(h));
}

TEST_F(PipelineTest, ConnectionCloseAndHttp10DecideKeepAlive) {
  uint64_t c1;
  auto r1 = exchange("GET /fixed HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 1, {}, &c1);
  EXPECT_EQ(r1[0].header("Connection"), "close");
  EXPECT_TRUE(reactor().writeShut(c1));

  uint64_t c2;
  auto r2 = exchange("GET /fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, {}, &c2);
  EXPECT_EQ(r2[0].header("Connection"), "keep-alive");
  EXPECT_FALSE(reactor().closed(c2));
  reactor().send(c2, "GET /fixed HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(reactor().writeShut(c2));
}

TEST_F(PipelineTest, ContinueIsSentWhenTheHeadIsInForNativeRoutes) {
  MemoryReactor& r = reactor();
  uint64_t conn = r.accept();
  r.send(conn, "PUT /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(r.take(conn), "HTTP/1.1 100 Continue\r\n\r\n");
  r.send(conn, "body");
  auto answers = readResponses(r.take(conn), 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 405);
  EXPECT_EQ(answers[0].header("Allow"), "GET, HEAD");
}

TEST_F(PipelineTest, MalformedRequestsGetAnErrorPageAndTheConnectionCloses) {
  struct Case {
    std::string bytes;
    int status;
  } cases[] = {
      {"GET /fixed HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", 400},
      {"GET /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"GET /fixed HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(40 * 1024, 'x') + "\r\n\r\n", 431},
      {"POST /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", 413},
      {"GET /" + std::string(9 * 1024, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n", 414},
      {"GET /fixed HTTP/1.1\r\nHost: t\r\n\r\nGET /fixed HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
       501},
  };
  for (const Case& c : cases) {
    MemoryReactor r(config_);
    uint64_t conn = r.accept();
    r.send(conn, c.bytes);
    ResponseReader reader;
    reader.expect();
    reader.expect();
    ASSERT_TRUE(reader.feed(r.received(conn))) << reader.error() << "\n" << c.bytes.substr(0, 80);
    ASSERT_GE(reader.finals(), 1u) << c.bytes.substr(0, 80);
    const ReadResponse& last = reader.responses().back();
    EXPECT_EQ(last.status, c.status) << c.bytes.substr(0, 80);
    EXPECT_EQ(last.header("Connection"), "close");
    EXPECT_EQ(last.header("Content-Type"), "text/plain; charset=utf-8");
    EXPECT_TRUE(r.writeShut(conn)) << c.bytes.substr(0, 80);
    // Bytes after the error are not read as requests.
    size_t before = r.received(conn).size();
    r.send(conn, kGetFixed);
    EXPECT_EQ(r.received(conn).size(), before);
  }
}

TEST_F(PipelineTest, AHeadRequestRefusedForItsBodyGetsNoErrorBody) {
  uint64_t conn;
  auto rs = exchange(std::string(kGetFixed) +
                         "HEAD /fixed HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcd\r\n0\r\n\r\n",
                     2, {false, true}, &conn);
  EXPECT_EQ(rs[1].status, 400);
  EXPECT_EQ(rs[1].header("Content-Length"), "16");
  EXPECT_TRUE(rs[1].body.empty());
  EXPECT_TRUE(reactor().writeShut(conn));
  // A bad head after a HEAD request: its method is unknown, the page is sent.
  auto after = exchange("HEAD /fixed HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nBad\r\n\r\n", 2, {true, false});
  EXPECT_EQ(after[1].status, 400);
  EXPECT_EQ(after[1].body, "400 Bad Request\n");
}

TEST_F(PipelineTest, DeadlinesCloseSlowAndIdleConnections) {
  MemoryReactor& r = reactor();
  // Head too slow: 408, then the close.
  uint64_t slow = r.accept();
  r.send(slow, "GET /fixed HTTP/1.1\r\nHost:");
  r.advance(1'000);
  EXPECT_TRUE(r.received(slow).empty());
  r.advance(1'500);
  auto answers = readResponses(r.received(slow), 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 408);
  EXPECT_TRUE(r.writeShut(slow));

  // Idle after an answer: closed without a word.
  uint64_t idle = r.accept();
  r.send(idle, kGetFixed);
  std::string answer = r.take(idle);
  EXPECT_FALSE(answer.empty());
  r.advance(2'500);
  EXPECT_FALSE(r.closed(idle));
  r.advance(1'000);
  EXPECT_TRUE(r.closed(idle));
  EXPECT_TRUE(r.received(idle).empty());

  // A body that stops arriving: 408.
  uint64_t body = r.accept();
  r.send(body, "POST /fixed HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  r.advance(4'500);
  auto bodyAnswers = readResponses(r.received(body), 1);
  ASSERT_EQ(bodyAnswers.size(), 1u);
  EXPECT_EQ(bodyAnswers[0].status, 408);
}

// After a burst, a quiet second hands memory back (the loop's onQuiet, and
// malloc_trim): once per quiet spell, at most every ten seconds, never
// while busy, for light traffic, or before any work.
TEST_F(PipelineTest, AQuietSecondAfterABurstSettlesOnce) {
  struct Loop final : LoopDriver {
    int fd() const override { return -1; }
    int timeoutMs() const override { return -1; }
    void runOnce() override {}
    bool alive() const override { return true; }
    void onQuiet() override { ++quiet; }
    int quiet = 0;
  } loop;
  MemoryReactor& r = reactor();
  r.setLoopDriver(&loop);
  r.advance(3'000);
  EXPECT_EQ(loop.quiet, 0);  // nothing served yet: nothing to give back
  auto burst = [&] {
    uint64_t c = r.accept();
    for (int i = 0; i < 40; ++i) {
      r.send(c, kGetFixed);  // each a wake-up of its own
      r.turn();
    }
    r.advance(250);  // the tick that sees them
  };
  burst();
  r.advance(750);
  EXPECT_EQ(loop.quiet, 0);  // quiet, but not for a second yet
  r.advance(500);
  EXPECT_EQ(loop.quiet, 1);
  r.advance(5'000);
  EXPECT_EQ(loop.quiet, 1);  // once per quiet spell
  // Light traffic (a request now and then) is no burst.
  for (int i = 0; i < 3; ++i) {
    uint64_t c = r.accept();
    r.send(c, kGetFixed);
    r.advance(1'500);
  }
  EXPECT_EQ(loop.quiet, 1);
  // A burst soon after a settle waits for the ten seconds to pass.
  burst();
  r.advance(1'500);
  EXPECT_EQ(loop.quiet, 2);
  burst();
  r.advance(1'500);
  EXPECT_EQ(loop.quiet, 2);
  r.advance(8'000);
  EXPECT_EQ(loop.quiet, 3);
  r.setLoopDriver(nullptr);
}

TEST_F(PipelineTest, MaxRequestsPerConnectionEndsItWithClose) {
  config_.maxRequestsPerConnection = 2;
  uint64_t conn;
  auto rs = exchange(std::string(kGetFixed) + kGetFixed + kGetFixed, 2, {}, &conn);
  EXPECT_TRUE(rs[0].keepAlive);
  EXPECT_EQ(rs[1].header("Connection"), "close");
  EXPECT_TRUE(reactor().writeShut(conn));
}

TEST_F(PipelineTest, DrainClosesIdleConnectionsAndAnswersTheRestWithClose) {
  MemoryReactor& r = reactor();
  uint64_t idle = r.accept();
  r.send(idle, kGetFixed);
  uint64_t midway = r.accept();
  r.send(midway, "GET /fixed HTTP/1.1\r\n");
  r.stop();
  r.turn();
  EXPECT_TRUE(r.closed(idle));
  EXPECT_FALSE(r.closed(midway));
  r.send(midway, "Host: t\r\n\r\n");
  auto answers = readResponses(r.received(midway), 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[0].header("Connection"), "close");
  EXPECT_TRUE(r.writeShut(midway));
}

TEST_F(PipelineTest, StaticFilesAnswerConditionalsRangesAndLargeFiles) {
  auto first = exchange("GET /static/a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 1);
  std::string etag = first[0].header("ETag");
  ASSERT_FALSE(etag.empty());
  auto rs = exchange("GET /static/a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: " + etag +
                         "\r\n\r\n"
                         "GET /static/a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=6-9\r\n\r\n"
                         "GET /static/a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=900-\r\n\r\n"
                         "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /static/missing HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /static/../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n"
                         "DELETE /static/a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
                     7);
  EXPECT_EQ(rs[0].status, 304);
  EXPECT_TRUE(rs[0].body.empty());
  EXPECT_EQ(rs[1].status, 206);
  EXPECT_EQ(rs[1].body, "from");
  EXPECT_EQ(rs[1].header("Content-Range"), "bytes 6-9/25");
  EXPECT_EQ(rs[2].status, 416);
  EXPECT_EQ(rs[3].status, 200);
  EXPECT_EQ(rs[3].body, big_);
  EXPECT_EQ(rs[4].status, 404);
  EXPECT_NE(rs[5].status, 200);
  EXPECT_EQ(rs[6].status, 405);
}

TEST_F(PipelineTest, AFileIsSentAsTheClientReadsIt) {
  MemoryReactor& r = reactor();
  uint64_t conn = r.accept();
  r.setWindow(conn, 1000);
  r.send(conn, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n" + std::string(kGetFixed));
  EXPECT_EQ(r.received(conn).size(), 1000u);
  std::string got = r.take(conn);
  for (int i = 0; i < 100 && got.size() < big_.size(); ++i) {
    r.grant(conn, 7000);
    got += r.take(conn);
  }
  r.grant(conn, SIZE_MAX);
  got += r.take(conn);
  auto answers = readResponses(got, 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].body, big_);
  EXPECT_EQ(answers[1].body, testing::kFixedBody);
}

TEST_F(PipelineTest, MetricsCountWhatWasAnswered) {
  reactor().context().setObservers(true, nullptr);
  exchange(std::string(kGetFixed) + "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 2);
  auto rs = exchange("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 1);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_NE(rs[0].header("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_NE(rs[0].body.find("kuai_requests_total"), std::string::npos) << rs[0].body;
  EXPECT_NE(rs[0].body.find("code=\"404\""), std::string::npos) << rs[0].body;
}

TEST_F(PipelineTest, AProxyRouteWithoutAReachableUpstreamAnswers502) {
  auto rs = exchange("GET /proxy/x HTTP/1.1\r\nHost: t\r\n\r\n" + std::string(kGetFixed), 2);
  EXPECT_EQ(rs[0].status, 502);
  EXPECT_EQ(rs[0].body, "502 Bad Gateway\n");
  EXPECT_EQ(rs[1].status, 200);
}

// An answer may leave before the request's body is in (the refused upstream
// is known first): a malformed rest of the body then closes the connection,
// with no second answer to the same request.
TEST_F(PipelineTest, ABadBodyAfterAnEarlyAnswerClosesTheConnection) {
  MemoryReactor& r = reactor();
  uint64_t conn = r.accept();
  r.send(conn, "POST /proxy/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab");
  r.turn();
  auto rs = readResponses(r.received(conn), 1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, 502);
  size_t answered = r.received(conn).size();
  EXPECT_FALSE(r.closed(conn));
  r.send(conn, "cd\r\n0\r\n\r\n" + std::string(kGetFixed));
  r.advance(1000);
  EXPECT_TRUE(r.closed(conn));
  EXPECT_EQ(r.received(conn).size(), answered) << r.received(conn);
}

TEST_F(PipelineTest, AppRoutesReachTheThreadsHandler) {
  TestHandler app;
  app.answerAtOnce = true;
  reactor().context().setAppHandler(testing::kTestApp, &app);
  auto rs = exchange("GET /app/hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", 1);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_EQ(rs[0].body, "ok\n");
  ASSERT_EQ(app.calls.size(), 1u);
  EXPECT_EQ(app.calls[0]->target, "/app/hello?x=1");
  reactor().context().setAppHandler(testing::kTestApp, nullptr);
  EXPECT_EQ(exchange("GET /app/hello HTTP/1.1\r\nHost: t\r\n\r\n", 1)[0].status, 503);
  reactor_.reset();  // before `app`: its connections may still call it
}

// A handler answering later, as the proxy and scripts do.
class AsyncPipelineTest : public PipelineTest {
 protected:
  // Connections call their handler until they go: the reactor goes first.
  ~AsyncPipelineTest() override { reactor_.reset(); }
  TestHandler& handler(bool takesBody = true) {
    handlers_.push_back(std::make_unique<TestHandler>(takesBody));
    return *handlers_.back();
  }
  std::vector<std::unique_ptr<TestHandler>> handlers_;

  uint64_t open(TestHandler& h) {
    MemoryReactor& r = reactor();
    return r.accept(r.listen(&h));
  }
};

TEST_F(AsyncPipelineTest, ALaterAnswerHoldsBackTheNextPipelinedRequest) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_EQ(h.calls.size(), 1u);
  EXPECT_TRUE(r.received(conn).empty());
  r.advance(10'000);  // the handler's time is not the client's: no 408
  EXPECT_TRUE(r.received(conn).empty());
  auto& ex = *h.calls[0]->ex;
  ex.writeHead(200, {}, "X-A: 1\r\n", -1);
  EXPECT_TRUE(ex.write("hello "));
  r.turn();
  EXPECT_TRUE(ex.write("world"));
  ex.end();
  r.turn();
  ASSERT_EQ(h.calls.size(), 2u);
  EXPECT_EQ(h.calls[1]->target, "/two");
  h.calls[1]->ex->writeError(418);
  r.turn();
  auto answers = readResponses(r.received(conn), 2);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_TRUE(answers[0].chunked);
  EXPECT_EQ(answers[0].body, "hello world");
  EXPECT_EQ(answers[0].header("X-A"), "1");
  EXPECT_EQ(answers[1].status, 418);
  EXPECT_EQ(answers[1].body, "418 I'm a Teapot\n");
}

TEST_F(AsyncPipelineTest, ABodyReachesAHandlerThatTakesItAsItArrives) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  ASSERT_EQ(h.calls.size(), 1u);
  EXPECT_EQ(h.calls[0]->body, "hello");
  EXPECT_FALSE(h.calls[0]->bodyEnded);
  r.send(conn, "6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(h.calls[0]->body, "hello world");
  EXPECT_TRUE(h.calls[0]->bodyEnded);

  TestHandler& whole = handler(false);
  uint64_t c2 = open(whole);
  r.send(c2, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
  EXPECT_TRUE(whole.calls.empty());  // it wants the whole request
  r.send(c2, "cd");
  ASSERT_EQ(whole.calls.size(), 1u);
  EXPECT_TRUE(whole.calls[0]->body.empty());  // the protocol read and dropped it
}

TEST_F(AsyncPipelineTest, APausedBodyWaitsUntilTheHandlerResumesIt) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc");
  ASSERT_EQ(h.calls.size(), 1u);
  auto& call = *h.calls[0];
  call.ex->pauseBody();
  r.turn();
  EXPECT_FALSE(r.reading(conn));
  r.send(conn, "def");
  EXPECT_EQ(call.body, "abc");
  r.advance(20'000);  // a paused body is the handler's wait, not the client's: no 408
  EXPECT_TRUE(r.received(conn).empty());
  call.ex->resumeBody();
  r.turn();
  EXPECT_TRUE(r.reading(conn));
  EXPECT_EQ(call.body, "abcdef");
  EXPECT_TRUE(call.bodyEnded);
}

TEST_F(AsyncPipelineTest, AHandlerAnsweringContinueDecidesWhen) {
  TestHandler& h = handler();
  h.answersContinue_ = true;
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(h.calls.size(), 1u);
  EXPECT_TRUE(r.received(conn).empty());
  h.calls[0]->ex->writeContinue();
  r.turn();
  EXPECT_EQ(r.take(conn), "HTTP/1.1 100 Continue\r\n\r\n");
  r.send(conn, "ok");
  EXPECT_EQ(h.calls[0]->body, "ok");
}

TEST_F(AsyncPipelineTest, BackpressureStopsTheWriterUntilTheClientReads) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.setWindow(conn, 0);
  r.send(conn, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
  auto& call = *h.calls[0];
  call.ex->writeHead(200, {}, {}, -1);
  std::string chunk(4096, 'z');
  size_t written = 0;
  while (call.ex->write(chunk)) {
    written += chunk.size();
    ASSERT_LT(written, 16u * 1024 * 1024) << "write() never asked the writer to wait";
  }
  written += chunk.size();
  EXPECT_GE(call.ex->pendingBytes(), 64u * 1024 - 4096);
  r.turn();
  EXPECT_EQ(call.drains, 0);
  EXPECT_TRUE(r.received(conn).empty());
  r.grant(conn, SIZE_MAX);
  EXPECT_EQ(call.drains, 1);
  call.ex->end();
  r.turn();
  auto answers = readResponses(r.received(conn), 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].body.size(), written);
}

TEST_F(AsyncPipelineTest, AClientGoingAwayAbortsTheExchange) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_EQ(h.calls.size(), 1u);
  r.shutdown(conn);
  EXPECT_TRUE(h.calls[0]->aborted);
  EXPECT_TRUE(r.closed(conn));
  ASSERT_EQ(h.closedConnections.size(), 1u);
  EXPECT_EQ(h.closedConnections[0], conn);
  // Writing to an exchange whose connection is gone is harmless.
  h.calls[0]->ex->writeHead(200, {}, {}, 2);
  h.calls[0]->ex->write("ok");
  h.calls[0]->ex->end();
  r.turn();
  EXPECT_EQ(r.openConnections(), 0u);
}

TEST_F(AsyncPipelineTest, AnAbortedResponseIsCutShortNeverWrong) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
  auto& ex = *h.calls[0]->ex;
  ex.writeHead(200, {}, {}, 10);
  ex.write("abc");
  ex.abort();
  r.turn();
  EXPECT_TRUE(r.closed(conn));
  EXPECT_EQ(h.calls.size(), 1u);  // the pipelined request is never answered
  ResponseReader reader;
  reader.expect();
  ASSERT_TRUE(reader.feed(r.received(conn))) << reader.error();
  EXPECT_EQ(reader.finals(), 0u);
  EXPECT_FALSE(reader.finish());
}

TEST_F(AsyncPipelineTest, AnUpgradeTurnsTheConnectionIntoATunnel) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly");
  ASSERT_EQ(h.calls.size(), 1u);
  auto& call = *h.calls[0];
  call.ex->acceptUpgrade("Upgrade: websocket\r\nConnection: Upgrade\r\n");
  r.turn();
  std::string head = r.take(conn);
  EXPECT_EQ(head.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Upgrade: websocket\r\n"), std::string::npos);
  EXPECT_EQ(call.body, "early");
  r.send(conn, "GET / HTTP/1.1\r\n\r\n");  // not HTTP any more: passed through
  EXPECT_EQ(call.body, "earlyGET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(call.ex->write("raw bytes"));
  r.turn();
  EXPECT_EQ(r.take(conn), "raw bytes");
  r.shutdown(conn);
  EXPECT_TRUE(call.bodyEnded);
}

// A handler that switches on the head: the body the head announced is still
// HTTP (decoded, as node parses it into the request) and the new protocol's
// bytes begin after it; a body that does not parse closes the connection
// after the 101, never a 400 inside the tunnel. Whole or cut anywhere, the same.
TEST_F(AsyncPipelineTest, AnUpgradeWithABodySwitchesAfterTheBody) {
  const std::string head =
      "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  struct Case {
    std::string body, raw, seen;
    bool closes;
  };
  const std::vector<Case> cases = {
      {"5\r\nhello\r\n0\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "helloGET / HTTP/1.1\r\n\r\n", false},
      {"1999999 00\r\nnot a chunk\r\n", "", "", true},
  };
  for (const Case& c : cases) {
    const std::string in = head + c.body + c.raw;
    for (size_t cut = 1; cut <= in.size(); ++cut) {
      reactor_.reset();
      handlers_.clear();
      TestHandler& h = handler();
      h.upgradeAtOnce = true;
      MemoryReactor& r = reactor();
      uint64_t conn = open(h);
      r.send(conn, std::string_view(in).substr(0, cut));
      if (cut < in.size()) r.send(conn, std::string_view(in).substr(cut));
      r.turn();
      ASSERT_EQ(h.calls.size(), 1u) << "cut " << cut;
      auto& call = *h.calls[0];
      EXPECT_EQ(call.body, c.seen) << "cut " << cut;
      std::string out = r.take(conn);
      EXPECT_EQ(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
          << "cut " << cut;
      r.advance(1000);
      EXPECT_EQ(r.closed(conn), c.closes) << "cut " << cut;
      if (c.closes) continue;
      EXPECT_TRUE(call.ex->write("raw"));
      r.turn();
      EXPECT_EQ(r.take(conn), "raw");
      r.send(conn, "more");
      EXPECT_EQ(call.body, c.seen + "more");
      r.shutdown(conn);
      EXPECT_TRUE(call.bodyEnded) << "cut " << cut;
    }
  }
}

TEST_F(AsyncPipelineTest, AHandlerAnsweringTooMuchOrTooLittleCannotCorruptTheStream) {
  TestHandler& h = handler();
  MemoryReactor& r = reactor();
  uint64_t conn = open(h);
  r.send(conn, "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
  auto& ex = *h.calls[0]->ex;
  ex.writeHead(200, {}, {}, 3);
  ex.write("abcdef");  // more than announced: cut to the length
  ex.write("ghi");
  ex.end();
  r.turn();
  ASSERT_EQ(h.calls.size(), 2u);
  auto& short_ = *h.calls[1]->ex;
  short_.writeHead(200, {}, {}, 5);
  short_.write("ab");
  short_.end();  // less than announced: the client sees it cut short
  r.turn();
  EXPECT_TRUE(r.closed(conn));
  ResponseReader reader;
  reader.expect();
  reader.expect();
  ASSERT_TRUE(reader.feed(r.received(conn))) << reader.error() << "\n" << r.received(conn);
  ASSERT_EQ(reader.finals(), 1u);
  EXPECT_EQ(reader.responses()[0].body, "abc");
  EXPECT_FALSE(reader.finish());
}

}  // namespace
}  // namespace kuai::server
