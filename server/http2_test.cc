// HTTP/2 over MemoryReactor: an nghttp2 client session talks to kuai's
// Http2Session through in-memory transports (h2c with prior knowledge), for
// the same router and handlers as HTTP/1.1: concurrent streams, static files,
// flow control with a client that holds its window shut, bodies to handlers,
// limits, resets and GOAWAY.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/http2_session.h"
#include "server/memory_reactor.h"
#include "server/testing/test_site.h"

namespace kuai::server {
namespace {

namespace fs = std::filesystem;

// One client connection: an nghttp2 client session whose bytes go through
// the MemoryReactor.
class Client {
 public:
  struct Response {
    std::map<std::string, std::string> headers;
    std::map<std::string, std::string> trailers;  // a HEADERS block after the head
    std::string body;
    bool ended = false;
    uint32_t reset = 0;  // RST_STREAM error code, when reset
    bool wasReset = false;
  };

  Client(MemoryReactor& r, Listener* l, uint32_t window = 0) : r_(r) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &onHeader);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &onData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &onClose);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &onFrame);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (window) nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_client_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    std::vector<nghttp2_settings_entry> settings;
    if (window) settings.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window});
    settings.push_back({NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1});
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
    if (window > 65535) nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, int32_t(window));
    conn_ = r_.accept(l);
  }
  ~Client() { nghttp2_session_del(session_); }

  // With `trailers`, the body ends with them (a trailing HEADERS frame).
  int32_t get(const std::string& path, const std::string& method = "GET",
              std::vector<std::pair<std::string, std::string>> extra = {}, const std::string* body = nullptr,
              std::vector<std::pair<std::string, std::string>> trailers = {}) {
    trailers_ = std::move(trailers);
    std::vector<std::pair<std::string, std::string>> fields = {
        {":method", method}, {":path", path}, {":scheme", "http"}, {":authority", "kuai.test"}};
    fields.insert(fields.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : fields) {
      nv.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()), n.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider;
    if (body) {
      body_ = *body;
      provider.source.ptr = this;
      provider.read_callback = [](nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                                  nghttp2_data_source* src, void*) -> ssize_t {
        auto* c = static_cast<Client*>(src->ptr);
        size_t n = std::min(len, c->body_.size());
        memcpy(buf, c->body_.data(), n);
        c->body_.erase(0, n);
        if (c->body_.empty()) {
          *flags |= NGHTTP2_DATA_FLAG_EOF;
          if (!c->trailers_.empty()) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            std::vector<nghttp2_nv> tv;
            for (auto& [tn, tval] : c->trailers_) {
              tv.push_back({reinterpret_cast<uint8_t*>(tn.data()), reinterpret_cast<uint8_t*>(tval.data()),
                            tn.size(), tval.size(), NGHTTP2_NV_FLAG_NONE});
            }
            nghttp2_submit_trailer(c->session_, id, tv.data(), tv.size());
          }
        }
        return ssize_t(n);
      };
    }
    return nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), body ? &provider : nullptr, nullptr);
  }

  // Sends what the client has, then reads what kuai answered, until quiet.
  void exchange() {
    for (int i = 0; i < 1000; ++i) {
      std::string out;
      const uint8_t* data;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(session_, &data)) > 0) out.append(reinterpret_cast<const char*>(data), n);
      if (!out.empty()) r_.send(conn_, out);
      std::string in = r_.take(conn_);
      if (in.empty() && out.empty()) return;
      if (!in.empty()) {
        ssize_t got = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
        ASSERT_EQ(got, ssize_t(in.size())) << nghttp2_strerror(int(got));
      }
    }
  }

  void sendRaw(const std::string& bytes) { r_.send(conn_, bytes); }
  // What the client session has to send, taken.
  std::string pending() {
    std::string out;
    const uint8_t* data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &data)) > 0) out.append(reinterpret_cast<const char*>(data), n);
    return out;
  }
  // Opens the window of a stream (and the connection) by `n` bytes.
  void consume(int32_t stream, size_t n) { nghttp2_session_consume(session_, stream, n); }

  std::map<int32_t, Response> responses;
  std::vector<int32_t> dataOrder;  // the stream of each DATA chunk, in arrival order
  uint32_t goawayError = UINT32_MAX;
  uint64_t conn_;
  nghttp2_session* session_;

 private:
  static int onHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v,
                      size_t vl, uint8_t, void* self) {
    Response& r = static_cast<Client*>(self)->responses[f->hd.stream_id];
    auto& to = f->headers.cat == NGHTTP2_HCAT_HEADERS && r.headers.count(":status") ? r.trailers : r.headers;
    to[std::string(reinterpret_cast<const char*>(n), nl)] = std::string(reinterpret_cast<const char*>(v), vl);
    return 0;
  }
  static int onData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* self) {
    auto* c = static_cast<Client*>(self);
    c->responses[id].body.append(reinterpret_cast<const char*>(d), len);
    c->dataOrder.push_back(id);
    return 0;
  }
  static int onFrame(nghttp2_session*, const nghttp2_frame* f, void* self) {
    auto* c = static_cast<Client*>(self);
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      c->responses[f->hd.stream_id].ended = true;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) c->goawayError = f->goaway.error_code;
    return 0;
  }
  static int onClose(nghttp2_session*, int32_t id, uint32_t error, void* self) {
    auto* c = static_cast<Client*>(self);
    if (error != NGHTTP2_NO_ERROR) {
      c->responses[id].wasReset = true;
      c->responses[id].reset = error;
    }
    return 0;
  }

  MemoryReactor& r_;
  std::string body_;
  std::vector<std::pair<std::string, std::string>> trailers_;
};

class Http2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kuai-h2-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::ofstream(root_ + "/a.txt") << "a static file\n";
    big_.resize(700 * 1024);
    for (size_t i = 0; i < big_.size(); ++i) big_[i] = char('a' + i * 13 % 26);
    std::ofstream(root_ + "/big.bin", std::ios::binary) << big_;
    auto site = testing::routeKindsSite(root_, "/static/");
    site->logging.metricsPath = "/metrics";
    config_.site = site;
    config_.limits.maxBodyBytes = 64 * 1024;
    reactor_ = std::make_unique<MemoryReactor>(config_);
    listener_ = reactor_->listen();
    listener_->h2c = true;
  }
  void TearDown() override {
    reactor_.reset();
    fs::remove_all(root_);
  }

  ServerConfig config_;
  std::unique_ptr<MemoryReactor> reactor_;
  Listener* listener_ = nullptr;
  std::string root_, big_;
};

TEST_F(Http2Test, ConcurrentStreamsReachEveryRouteKind) {
  Client c(*reactor_, listener_);
  int32_t fixed = c.get("/fixed");
  int32_t file = c.get("/static/a.txt");
  int32_t big = c.get("/static/big.bin");
  int32_t none = c.get("/nowhere");
  int32_t head = c.get("/static/a.txt", "HEAD");
  int32_t app = c.get("/app/x");
  int32_t proxy = c.get("/proxy/x");
  c.exchange();
  EXPECT_EQ(c.responses[fixed].headers[":status"], "200");
  EXPECT_EQ(c.responses[fixed].body, testing::kFixedBody);
  EXPECT_EQ(c.responses[fixed].headers["server"], "kuai");
  EXPECT_FALSE(c.responses[fixed].headers["date"].empty());
  EXPECT_EQ(c.responses[file].body, "a static file\n");
  EXPECT_FALSE(c.responses[file].headers["etag"].empty());
  EXPECT_EQ(c.responses[big].body.size(), big_.size());
  EXPECT_TRUE(c.responses[big].body == big_);
  EXPECT_EQ(c.responses[none].headers[":status"], "404");
  EXPECT_EQ(c.responses[head].headers[":status"], "200");
  EXPECT_EQ(c.responses[head].headers["content-length"], "14");
  EXPECT_TRUE(c.responses[head].body.empty());
  EXPECT_EQ(c.responses[app].headers[":status"], "503");
  EXPECT_EQ(c.responses[proxy].headers[":status"], "502");
  for (auto& [id, r] : c.responses) {
    EXPECT_TRUE(r.ended) << id;
    EXPECT_EQ(r.headers.count("connection"), 0u);
    EXPECT_EQ(r.headers.count("keep-alive"), 0u);
  }
  EXPECT_FALSE(reactor_->closed(c.conn_));
}

TEST_F(Http2Test, HttpOneStillWorksOnAnH2cListener) {
  uint64_t conn = reactor_->accept(listener_);
  reactor_->send(conn, "GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(reactor_->received(conn).rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  // The preface split across reads is still recognised.
  uint64_t h2 = reactor_->accept(listener_);
  std::string preface(Http2Session::kPreface);
  reactor_->send(h2, preface.substr(0, 3));
  reactor_->send(h2, preface.substr(3, 10));
  EXPECT_TRUE(reactor_->received(h2).empty());
  reactor_->send(h2, preface.substr(13));
  reactor_->send(h2, std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9));  // empty SETTINGS
  std::string got = reactor_->take(h2);
  ASSERT_GE(got.size(), 9u);
  EXPECT_EQ(got[3], '\x04');  // kuai's SETTINGS first
}

TEST_F(Http2Test, AShutWindowHoldsTheBodyUntilTheClientReads) {
  Client c(*reactor_, listener_, 1000);
  int32_t big = c.get("/static/big.bin");
  c.exchange();
  EXPECT_EQ(c.responses[big].body.size(), 1000u);  // the stream window
  EXPECT_FALSE(c.responses[big].ended);
  size_t seen = 0;
  for (int i = 0; i < 10000 && !c.responses[big].ended; ++i) {
    size_t now = c.responses[big].body.size();
    c.consume(big, now - seen);
    seen = now;
    c.exchange();
  }
  EXPECT_TRUE(c.responses[big].ended);
  EXPECT_EQ(c.responses[big].body.size(), big_.size());
  EXPECT_TRUE(c.responses[big].body == big_);
}

TEST_F(Http2Test, LimitsAnswer431And413AndTheConnectionGoesOn) {
  Client c(*reactor_, listener_);
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 120; ++i) many.push_back({"x-f" + std::to_string(i), "v"});
  int32_t fields = c.get("/fixed", "GET", many);
  std::string body(100 * 1024, 'b');
  int32_t large = c.get("/fixed", "POST", {{"content-length", std::to_string(body.size())}}, &body);
  int32_t after = c.get("/fixed");
  c.exchange();
  EXPECT_EQ(c.responses[fields].headers[":status"], "431");
  EXPECT_EQ(c.responses[large].headers[":status"], "413");
  EXPECT_EQ(c.responses[after].headers[":status"], "200");
  EXPECT_FALSE(reactor_->closed(c.conn_));
}

TEST_F(Http2Test, ABodyReachesAHandlerAsItArrives) {
  struct Echo final : Handler, ExchangeListener {
    std::shared_ptr<Exchange> ex;
    std::string body;
    std::string version;
    void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& e) override {
      ex = e;
      version = std::to_string(req.versionMajor) + "." + std::to_string(req.versionMinor) + " " +
                std::string(req.host);
      e->setListener(this);
    }
    void onBody(std::string_view chunk) override { body.append(chunk); }
    void onBodyEnd() override {
      ex->writeHead(200, {}, "X-Echo: 1\r\nConnection: close\r\n", -1);
      ex->write(version + " " + std::to_string(body.size()));
      ex->end();
    }
    void onAbort() override {}
    void onDrain() override {}
  } echo;
  Listener* l = reactor_->listen(&echo);
  l->h2c = true;
  {
    Client c(*reactor_, l);
    std::string body(50000, 'x');
    int32_t id = c.get("/up", "PUT", {}, &body);
    c.exchange();
    EXPECT_EQ(c.responses[id].headers[":status"], "200");
    EXPECT_EQ(c.responses[id].headers["x-echo"], "1");
    EXPECT_EQ(c.responses[id].headers.count("connection"), 0u);
    EXPECT_EQ(c.responses[id].body, "2.0 kuai.test 50000");
  }
  reactor_.reset();  // before `echo`
}

TEST_F(Http2Test, TrailersGoBothWaysAndAResetCarriesItsCode) {
  struct Trailing final : Handler, ExchangeListener {
    std::shared_ptr<Exchange> ex;
    std::string path;
    size_t got = 0;
    void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& e) override {
      ex = e;
      path = std::string(req.target);
      got = 0;
      e->setListener(this);
      if (path == "/reset") {
        e->writeHead(200, {}, {}, -1);
        e->write("part");
        e->abort(NGHTTP2_REFUSED_STREAM);
      }
    }
    void onBody(std::string_view chunk) override { got += chunk.size(); }
    void onBodyEnd() override {
      if (path == "/reset") return;
      ex->writeHead(200, {}, {}, -1);
      ex->write(std::to_string(got) + " [" + ex->requestTrailers() + "]");
      if (path != "/empty") ex->setTrailers("X-Done: yes\r\nX-Many: 1\r\nConnection: close\r\n");
      ex->end();
    }
    void onAbort() override {}
    void onDrain() override {}
  } handler;
  Listener* l = reactor_->listen(&handler);
  l->h2c = true;
  {
    Client c(*reactor_, l);
    std::string body(30000, 't');
    int32_t both = c.get("/both", "POST", {}, &body, {{"x-sum", "abc"}, {"x-n", "2"}});
    c.exchange();
    const Client::Response& r = c.responses[both];
    EXPECT_EQ(r.body, "30000 [x-sum: abc\r\nx-n: 2\r\n]");
    EXPECT_TRUE(r.ended);
    EXPECT_EQ(r.trailers.at("x-done"), "yes");
    EXPECT_EQ(r.trailers.at("x-many"), "1");
    EXPECT_EQ(r.trailers.count("connection"), 0u);  // connection-specific: left out
    EXPECT_EQ(r.headers.count("x-done"), 0u);

    std::string small = "s";
    int32_t none = c.get("/empty", "POST", {}, &small);
    c.exchange();
    EXPECT_EQ(c.responses[none].body, "1 []");
    EXPECT_TRUE(c.responses[none].ended);
    EXPECT_TRUE(c.responses[none].trailers.empty());
    int32_t reset = c.get("/reset");
    c.exchange();
    EXPECT_TRUE(c.responses[reset].wasReset);
    EXPECT_EQ(c.responses[reset].reset, uint32_t(NGHTTP2_REFUSED_STREAM));
    EXPECT_FALSE(reactor_->closed(c.conn_));  // a stream's reset, not the connection's
  }
  reactor_.reset();  // before `handler`
}

TEST_F(Http2Test, AHandlerPausingTheBodyClosesTheClientsWindow) {
  struct Slow final : Handler, ExchangeListener {
    std::shared_ptr<Exchange> ex;
    size_t got = 0;
    bool ended = false;
    void onRequest(const parser::Request&, const std::shared_ptr<Exchange>& e) override {
      ex = e;
      e->setListener(this);
      e->pauseBody();
    }
    void onBody(std::string_view chunk) override { got += chunk.size(); }
    void onBodyEnd() override {
      ended = true;
      ex->writeHead(200, {}, {}, -1);
      ex->write(std::to_string(got));
      ex->end();
    }
    void onAbort() override {}
    void onDrain() override {}
  } slow;
  ServerConfig config = config_;
  config.limits.maxBodyBytes = 8 << 20;
  {
    MemoryReactor r(config);
    Listener* l = r.listen(&slow);
    l->h2c = true;
    Client c(r, l);
    std::string body(3 << 20, 'u');
    int32_t id = c.get("/up", "POST", {}, &body);
    c.exchange();
    // Paused: no more than the stream's window (1 MiB) came.
    EXPECT_GT(slow.got, 0u);
    EXPECT_LE(slow.got, size_t(1) << 20);
    EXPECT_FALSE(slow.ended);
    slow.ex->resumeBody();
    r.turn();
    c.exchange();
    EXPECT_TRUE(slow.ended);
    EXPECT_EQ(c.responses[id].body, std::to_string(body.size()));
  }
}

TEST_F(Http2Test, PriorityFieldsOrderTheResponses) {
  Client c(*reactor_, listener_, 16 << 20);
  int32_t low = c.get("/static/big.bin", "GET", {{"priority", "u=7"}});
  int32_t high = c.get("/static/big.bin?again", "GET", {{"priority", "u=0"}});
  c.exchange();
  ASSERT_TRUE(c.responses[low].ended && c.responses[high].ended);
  size_t lastHigh = 0, firstLow = c.dataOrder.size();
  for (size_t i = 0; i < c.dataOrder.size(); ++i) {
    if (c.dataOrder[i] == high) lastHigh = i;
    if (c.dataOrder[i] == low && firstLow == c.dataOrder.size()) firstLow = i;
  }
  EXPECT_LT(lastHigh, firstLow) << "the urgent response went out first";
}

TEST_F(Http2Test, DrainSendsGoawayAndFinishesOpenStreams) {
  Client c(*reactor_, listener_, 1000);
  int32_t big = c.get("/static/big.bin");
  c.exchange();
  reactor_->stop();
  reactor_->turn();
  size_t seen = 0;
  for (int i = 0; i < 10000 && !c.responses[big].ended; ++i) {
    size_t now = c.responses[big].body.size();
    c.consume(big, now - seen);
    seen = now;
    c.exchange();
  }
  EXPECT_EQ(c.goawayError, uint32_t(NGHTTP2_NO_ERROR));
  EXPECT_EQ(c.responses[big].body.size(), big_.size());
  EXPECT_TRUE(c.responses[big].body == big_);
  reactor_->advance(1000);
  EXPECT_TRUE(reactor_->closed(c.conn_));
}

TEST_F(Http2Test, RapidResetIsStoppedWithEnhanceYourCalm) {
  Client c(*reactor_, listener_);
  c.exchange();
  for (int i = 0; i < 1200 && c.goawayError == UINT32_MAX; ++i) {
    // A request (to the proxy: answered later) and its reset, in one write.
    int32_t id = c.get("/proxy/x");
    std::string bytes = c.pending();
    nghttp2_submit_rst_stream(c.session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    bytes += c.pending();
    c.sendRaw(bytes);
    std::string in = reactor_->take(c.conn_);
    nghttp2_session_mem_recv(c.session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  }
  EXPECT_EQ(c.goawayError, uint32_t(NGHTTP2_ENHANCE_YOUR_CALM));
  reactor_->turn();
  EXPECT_TRUE(reactor_->closed(c.conn_) || reactor_->writeShut(c.conn_));
}

// The frames in `bytes` (after kuai's 9-byte frame headers): type, stream,
// first 4 payload bytes as a number (an error code for RST_STREAM / GOAWAY's
// last stream).
struct Frame {
  uint8_t type;
  uint32_t stream;
  uint32_t word;
};
std::vector<Frame> frames(const std::string& bytes) {
  std::vector<Frame> out;
  auto u32 = [&](size_t at) {
    return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
           uint32_t(uint8_t(bytes[at + 2])) << 8 | uint32_t(uint8_t(bytes[at + 3]));
  };
  for (size_t at = 0; at + 9 <= bytes.size();) {
    size_t len = size_t(uint8_t(bytes[at])) << 16 | size_t(uint8_t(bytes[at + 1])) << 8 | uint8_t(bytes[at + 2]);
    Frame f{uint8_t(bytes[at + 3]), u32(at + 5) & 0x7fffffff, len >= 4 && at + 13 <= bytes.size() ? u32(at + 9) : 0};
    out.push_back(f);
    at += 9 + len;
  }
  return out;
}

TEST_F(Http2Test, MoreThanAHundredOpenStreamsAreRefused) {
  struct Never final : Handler {
    std::vector<std::shared_ptr<Exchange>> held;
    void onRequest(const parser::Request&, const std::shared_ptr<Exchange>& e) override { held.push_back(e); }
  } never;
  {
    MemoryReactor r(config_);
    Listener* l = r.listen(&never);
    l->h2c = true;
    uint64_t conn = r.accept(l);
    std::string out(Http2Session::kPreface);
    out += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS
    // 101 requests, each HEADERS (END_STREAM | END_HEADERS) with static-table
    // fields: GET, http, /, :authority t.
    const std::string block("\x82\x86\x84\x41\x01t", 6);
    for (uint32_t i = 0; i < 101; ++i) {
      uint32_t id = 1 + 2 * i;
      char head[9] = {0, 0, char(block.size()), 1, 5, char(id >> 24), char(id >> 16), char(id >> 8), char(id)};
      out.append(head, 9).append(block);
    }
    r.send(conn, out);
    EXPECT_EQ(never.held.size(), 100u);
    bool refused = false;
    for (const Frame& f : frames(r.take(conn))) {
      if (f.type == 3) {  // RST_STREAM
        EXPECT_EQ(f.stream, 201u);
        refused = true;
      }
    }
    EXPECT_TRUE(refused);
    EXPECT_FALSE(r.closed(conn));
  }
}

TEST_F(Http2Test, AGarbledFrameIsAConnectionError) {
  uint64_t conn = reactor_->accept(listener_);
  std::string bytes(Http2Session::kPreface);
  bytes += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS
  bytes += std::string("\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00", 13);  // WINDOW_UPDATE of 0
  reactor_->send(conn, bytes);
  std::string got = reactor_->take(conn);
  // A GOAWAY (type 7) with PROTOCOL_ERROR (1), then the close.
  EXPECT_NE(got.find(std::string("\x07\x00\x00\x00\x00\x00", 6)), std::string::npos);
  reactor_->advance(6000);
  EXPECT_TRUE(reactor_->closed(conn) || reactor_->writeShut(conn));
}

}  // namespace
}  // namespace kuai::server
