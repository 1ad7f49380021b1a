// libFuzzer target for the whole request pipeline: bytes in, responses out.
// Each input is one client's byte stream on one connection of a MemoryReactor
// (the real transports, HTTP/1.1 session, router and handlers; no sockets),
// to a site with static files, a fixed answer, an app route (a 503: no script), a proxy route
// whose upstream refuses, and 404s; or (by its first byte) to a listener whose
// handler takes bodies and echoes them, answers in pieces and accepts
// upgrades; and (another bit) as HTTP/2 frames after the h2c preface. The stream is sent whole, then split at pseudo-random points, then
// split again with the client's window shut and opened in small steps. Every
// run must send the same bytes (Date lines aside), and they must parse with
// the strict response parser as answers to the requests the request parser
// finds in the input; else __builtin_trap. ASan/UBSan catch the rest.
// Built by tools/fuzz; with parser/fuzz_replay_main.cc it replays the files
// named on its command line.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "parser/request_parser.h"
#include "server/http2_session.h"
#include "server/memory_reactor.h"
#include "server/testing/response_reader.h"
#include "server/testing/test_site.h"

namespace kuai::server {
namespace {

// Takes the body and answers when it ends: a chunked echo of what came, in
// two writes; "/ws..." with an Upgrade field becomes a tunnel echoing bytes.
class EchoHandler final : public Handler {
 public:
  struct Call final : ExchangeListener {
    std::shared_ptr<Exchange> ex;
    std::string head;
    uint64_t bodyBytes = 0;
    uint32_t sum = 0;
    void onBody(std::string_view chunk) override {
      if (ex->tunnel()) {
        ex->write(chunk);
        return;
      }
      bodyBytes += chunk.size();
      for (unsigned char c : chunk) sum = sum * 31 + c;
    }
    void onBodyEnd() override {
      if (ex->tunnel()) {
        ex->end();
        return;
      }
      std::string text = head + " " + std::to_string(bodyBytes) + " " + std::to_string(sum) + "\n";
      ex->writeHead(200, {}, "Content-Type: text/plain\r\n", -1);
      ex->write(text.substr(0, text.size() / 2));
      ex->write(text.substr(text.size() / 2));
      ex->end();
    }
    void onAbort() override {}
    void onDrain() override {}
  };

  void onRequest(const parser::Request& req, const std::shared_ptr<Exchange>& ex) override {
    auto call = std::make_shared<Call>();
    call->ex = ex;
    call->head = std::string(req.method) + " " + std::string(req.target);
    ex->setListener(call.get());
    if (req.upgrade && req.target.starts_with("/ws")) ex->acceptUpgrade("Upgrade: test\r\nConnection: Upgrade\r\n");
    calls_.push_back(std::move(call));
    if (calls_.size() > 64) calls_.erase(calls_.begin(), calls_.begin() + 32);
  }

 private:
  std::vector<std::shared_ptr<Call>> calls_;
};

struct World {
  std::string root;
  ServerConfig config;

  World() {
    char tmpl[] = "/tmp/kuai-pipeline-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    root = tmpl;
    std::ofstream(root + "/a.txt") << "a small file\n";
    std::string big(80 * 1024, 'b');
    std::ofstream(root + "/big.bin") << big;
    ::mkdir((root + "/dir").c_str(), 0755);
    std::ofstream(root + "/dir/index.html") << "<p>index</p>\n";

    auto site = testing::routeKindsSite(root, "/");
    site->routes.back().statics.listDirectories = true;
    config.site = site;
    // Small limits reach the 413/414/431 paths with short inputs.
    config.limits.maxRequestLine = 256;
    config.limits.maxFieldSize = 256;
    config.limits.maxHeaderBytes = 1024;
    config.limits.maxHeaders = 16;
    config.limits.maxBodyBytes = 4096;
  }
};

World& world() {
  static World w;
  return w;
}

// The requests a session would see in `in`: HEAD or not, one per parsed
// head, and one more for an error page when the parser refuses the input
// (`bodyError`: it refused a body, after its request's head was taken).
std::vector<bool> expectedHeads(std::string_view in, const parser::Limits& limits, bool echo,
                                bool* bodyError = nullptr) {
  struct Recorder final : parser::RequestParser::Handler {
    std::vector<bool> heads;
    bool echo = false;
    bool stop = false;
    void onHeaders(const parser::Request& req) override {
      heads.push_back(req.isHead);
      // The echo handler's tunnel: what follows is not HTTP.
      if (echo && req.upgrade && req.target.starts_with("/ws")) stop = true;
    }
    bool onRequest(const parser::Request&) override { return !stop; }
  } rec;
  rec.echo = echo;
  parser::RequestParser p(rec, limits);
  bool refused = p.feed(in.data(), in.size()) == parser::RequestParser::Result::kError;
  if (refused) rec.heads.push_back(false);
  if (bodyError) *bodyError = refused && p.phase() == parser::RequestParser::Phase::kBody;
  return rec.heads;
}

struct Run {
  std::string out;
  bool closed = false;
};

Run runOnce(std::string_view in, bool echo, const std::vector<size_t>& cuts, bool window, bool h2c = false) {
  World& w = world();
  EchoHandler echoHandler;
  Run run;
  {
    MemoryReactor r(w.config);
    Listener* l = echo ? r.listen(&echoHandler) : r.listen();
    l->h2c = h2c;
    uint64_t conn = r.accept(l);
    if (window) r.setWindow(conn, 0);
    size_t at = 0;
    for (size_t cut : cuts) {
      if (cut <= at || cut >= in.size()) continue;
      r.send(conn, in.substr(at, cut - at));
      at = cut;
      if (window) r.grant(conn, 512);
    }
    r.send(conn, in.substr(at));
    r.shutdown(conn);
    if (window) {
      for (int i = 0; i < 100000 && !r.closed(conn); ++i) {
        size_t before = r.received(conn).size();
        r.grant(conn, 4096);
        if (r.received(conn).size() - before < 4096) break;
      }
      r.grant(conn, SIZE_MAX);
    }
    r.advance(60'000);  // every deadline passes: lingering ends, the connection goes
    run.out = r.take(conn);
    run.closed = r.closed(conn);
  }
  return run;
}

// The answers in `a` and `b` read as answers to `heads` (x, y): true when
// both parse and are the same but for the last, which both have.
bool sameButLast(std::string_view a, std::string_view b, const std::vector<bool>& heads,
                 std::vector<testing::ReadResponse>& x, std::vector<testing::ReadResponse>& y) {
  testing::ResponseReader ra, rb;
  for (bool head : heads) {
    ra.expect(head);
    rb.expect(head);
  }
  if (!ra.feed(a) || !rb.feed(b)) return false;
  x = ra.responses();
  y = rb.responses();
  if (x.empty() || x.size() != y.size()) return false;
  for (size_t i = 0; i + 1 < x.size(); ++i) {
    if (x[i].status != y[i].status || x[i].headers != y[i].headers || x[i].body != y[i].body) return false;
  }
  return true;
}

// The request parser may find a limit (413/414/431) or a syntax error (400)
// first depending on where the input was cut (see parser::sameOutcome): the
// same answers, but for a last error page that is a limit's in one of them.
bool sameButLimit(std::string_view a, std::string_view b, const std::vector<bool>& heads) {
  std::vector<testing::ReadResponse> x, y;
  if (!sameButLast(a, b, heads, x, y)) return false;
  auto limit = [](int s) { return s == 413 || s == 414 || s == 431; };
  int s1 = x.back().status, s2 = y.back().status;
  return s1 >= 400 && s2 >= 400 && (limit(s1) || limit(s2)) && x.back().header("Connection") == "close" &&
         y.back().header("Connection") == "close";
}

// A request whose body turns out malformed may be answered before the bad
// bytes arrive (a proxy route's 502 once its refused connect is through) when
// the input comes in pieces, where in one piece the parser refuses it first:
// the same answers, but for the last, which is the error page (Connection:
// close) in one and a complete answer in the other.
bool sameButEarlyAnswer(std::string_view a, std::string_view b, const std::vector<bool>& heads) {
  std::vector<testing::ReadResponse> x, y;
  if (!sameButLast(a, b, heads, x, y)) return false;
  auto errorPage = [](const testing::ReadResponse& r) {
    int s = r.status;
    bool parserStatus = s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505;
    return parserStatus && r.header("Connection") == "close";
  };
  return errorPage(x.back()) != errorPage(y.back());
}

[[noreturn]] void fail(const char* what, std::string_view in, std::string_view a, std::string_view b) {
  // Where the two outputs part, with some context on each side.
  size_t at = 0;
  while (at < a.size() && at < b.size() && a[at] == b[at]) ++at;
  size_t from = at > 200 ? at - 200 : 0;
  auto part = [&](std::string_view s) { return from < s.size() ? s.substr(from, 400) : std::string_view(); };
  std::string x(part(a)), y(part(b));
  std::fprintf(stderr,
               "pipeline: %s\ninput (%zu bytes): %.*s\n--- whole (%zu bytes) from %zu:\n%s\n"
               "--- other (%zu bytes) from %zu:\n%s\n",
               what, in.size(), int(std::min<size_t>(in.size(), 600)), in.data(), a.size(), from, x.c_str(),
               b.size(), from, y.c_str());
  __builtin_trap();
}

}  // namespace
}  // namespace kuai::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kuai::server;
  if (size < 2 || size > 64 * 1024) return 0;
  bool echo = data[0] & 1;
  // Bit 1: HTTP/2 (h2c, the preface put in front of the input).
  bool h2 = data[0] & 2;
  uint32_t seed = data[0] * 2654435761u + data[1];
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string framed;
  if (h2) {
    framed = std::string(Http2Session::kPreface) + std::string(in);
    in = framed;
  }

  std::vector<size_t> cuts;
  for (size_t at = 0; at < in.size();) {
    seed = seed * 1103515245u + 12345u;
    at += 1 + (seed >> 16) % 24;
    cuts.push_back(at);
  }

  if (h2) {
    // nghttp2 frames the answers as the input's pieces arrive, so outputs
    // differ by split; every run must still end with the connection closed,
    // sanitizers quiet.
    for (bool window : {false, true}) {
      Run run = runOnce(in, echo, window ? cuts : std::vector<size_t>{}, window, true);
      if (!run.closed) fail("h2 connection left open", in, run.out, {});
    }
    return 0;
  }

  Run whole = runOnce(in, echo, {}, false);
  Run split = runOnce(in, echo, cuts, false);
  Run windowed = runOnce(in, echo, cuts, true);
  using kuai::server::testing::withoutDate;
  bool bodyError = false;
  std::vector<bool> heads = expectedHeads(in, world().config.limits, echo, &bodyError);
  auto same = [&](std::string_view a, std::string_view b) {
    return b == a || sameButLimit(a, b, heads) || (bodyError && sameButEarlyAnswer(a, b, heads));
  };
  std::string a = withoutDate(whole.out);
  std::string b = withoutDate(split.out);
  if (!same(a, b)) fail("split", in, a, b);
  std::string c = withoutDate(windowed.out);
  if (!same(a, c)) fail("windowed", in, a, c);
  if (!whole.closed || !split.closed || !windowed.closed) fail("connection left open", in, a, {});

  kuai::server::testing::ResponseReader reader;
  for (bool head : heads) reader.expect(head);
  if (!reader.feed(whole.out)) fail(reader.error().c_str(), in, whole.out, {});
  return 0;
}
