#include "parser/request_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parser/parse_recorder.h"

namespace kuai::parser {
namespace {

using Phase = RequestParser::Phase;
using Result = RequestParser::Result;

// A request case for the table-driven tests: the input and the status it must
// end in (0: accepted), with how many requests complete before that.
struct Case {
  const char* name;
  std::string input;
  int status;
  size_t requests;
};

std::string repeat(char c, size_t n) { return std::string(n, c); }

// A string literal with embedded NULs, whole.
template <size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

const std::vector<Case>& validCases() {
  static const std::vector<Case> cases = {
      {"get", "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", 0, 1},
      {"head", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1},
      {"post_length", "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", 0, 1},
      {"post_zero_length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, 1},
      {"chunked_ext_trailers",
       "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;name=value\r\nhello\r\n6;q=\"quoted str\";x\r\n world\r\n"
       "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
       0, 1},
      {"chunked_hex_sizes",
       "PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\n\r\n",
       0, 1},
      {"http10", "GET /old HTTP/1.0\r\n\r\n", 0, 1},
      {"http10_keepalive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, 1},
      {"http11_close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0, 1},
      {"pipelined",
       "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
       "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
       "PUT /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
       "GET /4 HTTP/1.1\r\nHost: b\r\nX: y\r\n\r\n",
       0, 4},
      {"expect_continue",
       "PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata", 0, 1},
      {"leading_crlf", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1},
      {"absolute_form", "GET http://example.com:8080/p?x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 0, 1},
      {"options_star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1},
      {"empty_value_and_ows", "GET / HTTP/1.1\r\nHost:a\r\nX-Empty:\r\nX-Pad: \t padded \t\r\n\r\n", 0, 1},
      {"empty_last_value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", 0, 1},
      {"empty_last_value_ows", "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: \t \r\n\r\n", 0, 1},
      {"many_headers",
       [] {
         std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
         for (int i = 0; i < 40; ++i) s += "X-H" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
         return s + "\r\n";
       }(),
       0, 1},
      {"incomplete_head", "GET /partial HTTP/1.1\r\nHost: a\r\nX-Part", 0, 0},
      {"incomplete_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", 0, 0},
      {"upgrade_then_request",
       "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
       "GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
       0, 2},
  };
  return cases;
}

const std::vector<Case>& invalidCases() {
  static const std::vector<Case> cases = {
      {"cl_and_te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0},
      {"te_and_cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, 0},
      {"cl_differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, 0},
      {"cl_duplicate_same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, 0},
      {"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400, 0},
      {"cl_plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, 0},
      {"cl_negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 0},
      {"cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400, 0},
      {"cl_inner_space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 1\r\n\r\nhello world", 400, 0},
      {"cl_empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, 0},
      {"cl_overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, 0},
      {"te_chunked_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0},
      {"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0},
      {"no_host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, 0},
      {"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Fold: one\r\n two\r\n\r\n", 400, 0},
      {"obs_fold_tab", "GET / HTTP/1.1\r\nHost: a\r\nX-Fold: one\r\n\ttwo\r\n\r\n", 400, 0},
      {"bare_cr_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, 0},
      {"bare_cr_line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400, 0},
      {"bare_lf_lines", "GET / HTTP/1.1\nHost: a\n\n", 400, 0},
      {"nul_value", bytes("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400, 0},
      {"nul_target", bytes("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), 400, 0},
      {"nul_name", bytes("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"), 400, 0},
      {"space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, 0},
      {"space_before_colon_te",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", 400, 0},
      {"leading_space_header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, 0},
      {"control_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 400, 0},
      {"del_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", 400, 0},
      {"bad_method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0},
      {"bad_chunk_size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, 0},
      {"chunk_size_overflow",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400, 0},
      {"chunk_missing_crlf",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 400, 0},
      {"empty_value_then_cr", "POST / HTTP/1.1\r\nHost: a\r\nX:\rTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n", 400, 0},
      {"cr_then_byte_ends_head", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\rabc", 400, 0},
      {"empty_header_name", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n: Bar\r\n\r\n", 400, 0},
      {"te_gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, 0},
      {"te_identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501, 0},
      {"version_2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, 0},
      {"version_0_9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, 0},
      {"version_3", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, 0},
      {"expect_other", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417, 0},
      {"request_line_too_long", "GET /" + repeat('a', 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, 0},
      {"field_too_long", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + repeat('v', 8300) + "\r\n\r\n", 431, 0},
      {"name_too_long", "GET / HTTP/1.1\r\nHost: a\r\nX" + repeat('n', 8300) + ": v\r\n\r\n", 431, 0},
      {"block_too_large",
       [] {
         std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
         for (int i = 0; i < 5; ++i) s += "X-" + std::to_string(i) + ": " + repeat('v', 7000) + "\r\n";
         return s + "\r\n";
       }(),
       431, 0},
      {"too_many_fields",
       [] {
         std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
         for (int i = 0; i < 100; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
         return s + "\r\n";
       }(),
       431, 0},
      {"body_too_large_length",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413, 0},
      {"pipelined_then_smuggle",
       "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400, 1},
  };
  return cases;
}

// Transfer-Encoding values other than a single final "chunked": 501 or 400.
const std::vector<Case>& badEncodingCases() {
  static const std::vector<Case> cases = {
      {"te_gzip_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, 0},
      {"te_chunked_gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 0, 0},
      {"te_chunked_twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0, 0},
      {"te_two_headers",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 0},
      {"te_gzip_then_chunked_headers",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 0},
      {"te_empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 0, 0},
      {"te_chunkedx", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 0, 0},
  };
  return cases;
}

std::vector<const Case*> allCases() {
  std::vector<const Case*> all;
  for (const Case& c : validCases()) all.push_back(&c);
  for (const Case& c : invalidCases()) all.push_back(&c);
  for (const Case& c : badEncodingCases()) all.push_back(&c);
  return all;
}

TEST(RequestParserTest, ValidCasesParse) {
  for (const Case& c : validCases()) {
    ParseOutcome o = parseWhole(c.input);
    EXPECT_EQ(o.status, 0) << c.name << ": " << describe(o);
    EXPECT_EQ(o.requests.size(), c.requests) << c.name << ": " << describe(o);
    EXPECT_EQ(o.problem, "") << c.name;
  }
}

TEST(RequestParserTest, InvalidCasesFailWithExactStatus) {
  for (const Case& c : invalidCases()) {
    ParseOutcome o = parseWhole(c.input);
    EXPECT_EQ(o.status, c.status) << c.name << ": " << describe(o);
    EXPECT_EQ(o.requests.size(), c.requests) << c.name << ": " << describe(o);
    EXPECT_EQ(o.problem, "") << c.name;
  }
}

TEST(RequestParserTest, UnsupportedTransferEncodingsAreRefused) {
  for (const Case& c : badEncodingCases()) {
    ParseOutcome o = parseWhole(c.input);
    EXPECT_TRUE(o.status == 501 || o.status == 400) << c.name << ": " << describe(o);
    EXPECT_TRUE(o.requests.empty()) << c.name;
  }
}

TEST(RequestParserTest, GetFields) {
  ParseOutcome o = parseWhole(validCases()[0].input);
  ASSERT_EQ(o.requests.size(), 1u);
  const SeenRequest& r = o.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/index.html?q=1");
  EXPECT_EQ(r.host, "example.com");
  EXPECT_EQ(r.versionMajor, 1);
  EXPECT_EQ(r.versionMinor, 1);
  EXPECT_TRUE(r.keepAlive);
  EXPECT_FALSE(r.chunked);
  EXPECT_FALSE(r.isHead);
  EXPECT_FALSE(r.expectContinue);
  EXPECT_EQ(r.contentLength, -1);
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0], std::make_pair(std::string("Host"), std::string("example.com")));
  EXPECT_EQ(r.headers[1], std::make_pair(std::string("Accept"), std::string("*/*")));
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(o.phase, Phase::kIdle);
}

TEST(RequestParserTest, HeaderLookupIsCaseInsensitive) {
  struct Check : RequestParser::Handler {
    bool onRequest(const Request& req) override {
      EXPECT_EQ(req.header("x-mixed-case"), "Value");
      EXPECT_EQ(req.header("HOST"), "a");
      EXPECT_TRUE(req.hasHeader("X-MIXED-CASE"));
      EXPECT_FALSE(req.hasHeader("x-missing"));
      EXPECT_EQ(req.header("x-missing"), "");
      ++seen;
      return true;
    }
    int seen = 0;
  } check;
  RequestParser p(check, Limits{});
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-Case: Value\r\n\r\n";
  EXPECT_EQ(p.feed(in.data(), in.size()), Result::kOk);
  EXPECT_EQ(check.seen, 1);
  EXPECT_TRUE(equalsIgnoreCase("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(equalsIgnoreCase("Content-Length", "Content-Lengt"));
}

TEST(RequestParserTest, HostMayBeOptional) {
  struct Count : RequestParser::Handler {
    bool onRequest(const Request& req) override {
      EXPECT_FALSE(req.hasHeader("host"));
      ++seen;
      return true;
    }
    int seen = 0;
  } count;
  std::string noHost = "GET / HTTP/1.1\r\n\r\n";
  RequestParser strict(count, Limits{});
  EXPECT_EQ(strict.feed(noHost.data(), noHost.size()), Result::kError);
  EXPECT_EQ(strict.error().status, 400);
  RequestParser lenient(count, Limits{});
  lenient.setRequireHost(false);
  EXPECT_EQ(lenient.feed(noHost.data(), noHost.size()), Result::kOk);
  EXPECT_EQ(count.seen, 1);
  // Two Host fields stay an error either way.
  RequestParser twice(count, Limits{});
  twice.setRequireHost(false);
  std::string two = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
  EXPECT_EQ(twice.feed(two.data(), two.size()), Result::kError);
  EXPECT_EQ(twice.error().status, 400);
}

TEST(RequestParserTest, HeadRequest) {
  ParseOutcome o = parseWhole("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].method, "HEAD");
  EXPECT_TRUE(o.requests[0].isHead);
}

// bodyless: nothing follows the head, so the head is the request's end.
TEST(RequestParserTest, BodylessIsKnownWithTheHead) {
  struct Case {
    const char* input;
    bool bodyless;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", true},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", false},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
      {"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
      {"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    ParseOutcome o = parseWhole(c.input);
    ASSERT_EQ(o.requests.size(), 1u) << c.input << describe(o);
    EXPECT_EQ(o.requests[0].bodyless, c.bodyless) << c.input;
  }
  // Reset between pipelined requests.
  ParseOutcome o = parseWhole(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 2u) << describe(o);
  EXPECT_FALSE(o.requests[0].bodyless);
  EXPECT_TRUE(o.requests[1].bodyless);
}

TEST(RequestParserTest, PostWithContentLength) {
  ParseOutcome o = parseWhole(validCases()[2].input);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].method, "POST");
  EXPECT_EQ(o.requests[0].contentLength, 11);
  EXPECT_EQ(o.requests[0].body, "hello world");
  EXPECT_FALSE(o.requests[0].chunked);
}

TEST(RequestParserTest, ChunkedWithExtensionsAndTrailers) {
  ParseOutcome o = parseWhole(validCases()[4].input);
  ASSERT_EQ(o.requests.size(), 1u) << describe(o);
  const SeenRequest& r = o.requests[0];
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.contentLength, -1);
  EXPECT_EQ(r.body, "hello world");
  // Trailer fields are not part of the request head.
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[1].first, "Transfer-Encoding");
  EXPECT_EQ(o.phase, Phase::kIdle);
}

TEST(RequestParserTest, TrailersDoNotChangeTheHead) {
  // A trailer named like a framing header must neither fail the request nor
  // show up in the head the handler sees.
  ParseOutcome o = parseWhole(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\nx\r\n0\r\nHost: evil\r\nExpect: nonsense\r\nX-T: 1\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 2u) << describe(o);
  EXPECT_EQ(o.requests[0].host, "a");
  EXPECT_EQ(o.requests[0].headers.size(), 2u);
  EXPECT_EQ(o.requests[0].body, "x");
  EXPECT_EQ(o.requests[1].target, "/next");
}

// The trailer fields come out as lines (names as sent, values trimmed),
// whole or split anywhere; bad ones fail the request.
TEST(RequestParserTest, TrailersAreKeptAsLines) {
  struct Keeper : RequestParser::Handler {
    RequestParser* parser = nullptr;
    std::vector<std::string> trailers;
    bool onRequest(const Request&) override {
      trailers.push_back(parser->trailers());
      return true;
    }
  };
  const std::string in =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\nx\r\n0\r\nX-Checksum: 42  \r\nX-Empty:\r\nHost: evil\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    Keeper k;
    RequestParser p(k, Limits{});
    k.parser = &p;
    std::string a = in.substr(0, cut), b = in.substr(cut);
    for (const std::string& piece : {a, b}) {
      if (piece.empty()) continue;
      ASSERT_EQ(p.feed(piece.data(), piece.size()), Result::kOk) << cut;
    }
    ASSERT_EQ(k.trailers.size(), 2u) << cut;
    EXPECT_EQ(k.trailers[0], "X-Checksum: 42\r\nX-Empty: \r\nHost: evil\r\n") << cut;
    EXPECT_EQ(k.trailers[1], "") << cut;
  }
  for (const char* bad : {"0\r\nBad Name: 1\r\n\r\n", "0\r\nX: a\x01b\r\n\r\n"}) {
    Keeper k;
    RequestParser p(k, Limits{});
    k.parser = &p;
    std::string req = std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") + bad;
    EXPECT_EQ(p.feed(req.data(), req.size()), Result::kError) << bad;
    EXPECT_EQ(p.error().status, 400) << bad;
  }
}

TEST(RequestParserTest, TrailerBytesAreLimited) {
  std::string in = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  for (int i = 0; i < 8; ++i) in += "X-T" + std::to_string(i) + ": " + repeat('t', 5000) + "\r\n";
  in += "\r\n";
  EXPECT_EQ(parseWhole(in).status, 431);
}

TEST(RequestParserTest, KeepAliveRules) {
  auto keepAlive = [](const std::string& in) {
    ParseOutcome o = parseWhole(in);
    EXPECT_EQ(o.requests.size(), 1u) << in;
    return !o.requests.empty() && o.requests[0].keepAlive;
  };
  EXPECT_FALSE(keepAlive("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(keepAlive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
  EXPECT_TRUE(keepAlive("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_FALSE(keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n"));
  EXPECT_FALSE(keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\t\r\n\r\n"));
  EXPECT_FALSE(keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n"));
  ParseOutcome o = parseWhole("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].versionMinor, 0);
  EXPECT_EQ(o.requests[0].host, "");
}

TEST(RequestParserTest, PipelinedRequestsInOneBuffer) {
  ParseOutcome o = parseWhole(validCases()[9].input);
  ASSERT_EQ(o.requests.size(), 4u) << describe(o);
  EXPECT_EQ(o.requests[0].target, "/1");
  EXPECT_EQ(o.requests[0].body, "");
  EXPECT_EQ(o.requests[1].target, "/2");
  EXPECT_EQ(o.requests[1].body, "abc");
  EXPECT_EQ(o.requests[2].target, "/3");
  EXPECT_EQ(o.requests[2].body, "hi");
  EXPECT_TRUE(o.requests[2].chunked);
  EXPECT_EQ(o.requests[3].target, "/4");
  EXPECT_EQ(o.requests[3].host, "b");
  EXPECT_EQ(o.phase, Phase::kIdle);
}

TEST(RequestParserTest, ExpectContinue) {
  ParseOutcome o = parseWhole(validCases()[10].input);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_TRUE(o.requests[0].expectContinue);
  EXPECT_EQ(o.requests[0].body, "data");
  // HTTP/1.0 clients do not understand 100 Continue: the flag stays off.
  o = parseWhole("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_FALSE(o.requests[0].expectContinue);
}

TEST(RequestParserTest, ExpectContinueVisibleBeforeBody) {
  // The server must be able to answer 100 Continue from onHeaders, before any
  // body byte arrives.
  struct Check : RequestParser::Handler {
    void onHeaders(const Request& req) override { sawExpect = req.expectContinue; }
    bool onRequest(const Request&) override { return true; }
    bool sawExpect = false;
  } check;
  RequestParser p(check, Limits{});
  std::string head = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
  EXPECT_EQ(p.feed(head.data(), head.size()), Result::kOk);
  EXPECT_TRUE(check.sawExpect);
  EXPECT_EQ(p.phase(), Phase::kBody);
  EXPECT_EQ(p.feed("ok", 2), Result::kOk);
  EXPECT_EQ(p.phase(), Phase::kIdle);
}

TEST(RequestParserTest, LimitBoundaries) {
  // Just under each limit parses; just over fails with the limit's status.
  auto status = [](const std::string& in, const Limits& l = Limits{}) {
    return parseWhole(in, l).status;
  };
  EXPECT_EQ(status("GET /" + repeat('a', 8000) + " HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
  EXPECT_EQ(status("GET /" + repeat('a', 8200) + " HTTP/1.1\r\nHost: a\r\n\r\n"), 414);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nX: " + repeat('v', 8000) + "\r\n\r\n"), 0);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nX: " + repeat('v', 8200) + "\r\n\r\n"), 431);

  std::string fields = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 98; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(status(fields + "\r\n"), 0);                 // 99 fields
  EXPECT_EQ(status(fields + "X-99: v\r\n\r\n"), 0);      // 100 fields
  EXPECT_EQ(status(fields + "X-99: v\r\nX-100: v\r\n\r\n"), 431);  // 101 fields

  std::string block = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 4; ++i) block += "X-" + std::to_string(i) + ": " + repeat('v', 7000) + "\r\n";
  EXPECT_EQ(status(block + "\r\n"), 0);
  EXPECT_EQ(status(block + "X-4: " + repeat('v', 7000) + "\r\n\r\n"), 431);

  Limits small;
  small.maxBodyBytes = 10;
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", small), 0);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n0123456789a", small), 413);
  std::string chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(status(chunked + "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", small), 0);
  EXPECT_EQ(status(chunked + "5\r\n01234\r\n6\r\n56789a\r\n0\r\n\r\n", small), 413);
  EXPECT_EQ(status(chunked + "ffff\r\n" + repeat('x', 11), small), 413);

  Limits tight;
  tight.maxRequestLine = 64;
  tight.maxFieldSize = 32;
  tight.maxHeaderBytes = 100;
  tight.maxHeaders = 3;
  EXPECT_EQ(status("GET /" + repeat('p', 70) + " HTTP/1.1\r\nHost: a\r\n\r\n", tight), 414);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nX: " + repeat('v', 40) + "\r\n\r\n", tight), 431);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", tight), 431);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", tight), 0);
}

// Whitespace that no span covers must still count against the head limits, or a
// client could make the parser buffer an unbounded head a few bytes at a time.
TEST(RequestParserTest, WhitespaceInHeadIsBounded) {
  std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX:";
  std::string spaces = repeat(' ', 1024);
  {
    // Fed a piece at a time.
    RecordingHandler rec(false);
    RequestParser p(rec, Limits{});
    Result r = p.feed(prefix.data(), prefix.size());
    int fed = 0;
    while (r == Result::kOk && fed < 1024) {
      r = p.feed(spaces.data(), spaces.size());
      ++fed;
    }
    EXPECT_EQ(r, Result::kError);
    EXPECT_EQ(p.error().status, 431);
    EXPECT_LT(fed, 64);
  }
  // Whole and split agree, with or without a value after the whitespace.
  for (const std::string& in : {prefix + repeat(' ', 50000) + "v\r\n\r\n",
                                prefix + repeat(' ', 50000) + "\r\n\r\n",
                                prefix + " v" + repeat(' ', 50000) + "\r\n\r\n"}) {
    ParseOutcome whole = parseWhole(in);
    EXPECT_EQ(whole.status, 431);
    for (size_t cut : {size_t(10), size_t(30), size_t(1000), size_t(45000), in.size() - 3}) {
      EXPECT_EQ(runParser(in, {cut}, false), whole) << cut;
    }
  }
}

TEST(RequestParserTest, FeedAfterErrorKeepsFailing) {
  RecordingHandler rec(false);
  RequestParser p(rec, Limits{});
  std::string bad = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
  EXPECT_EQ(p.feed(bad.data(), bad.size()), Result::kError);
  EXPECT_EQ(p.error().status, 400);
  EXPECT_STRNE(p.error().reason, "");
  std::string good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(p.feed(good.data(), good.size()), Result::kError);
  EXPECT_TRUE(rec.done_.empty());
}

// Every case, split at every byte offset, byte by byte, and with pauses, gives
// the same requests (or the same error) as when fed whole.
TEST(RequestParserTest, SplitAtEveryOffsetMatchesWhole) {
  for (const Case* c : allCases()) {
    const std::string& in = c->input;
    ParseOutcome whole = parseWhole(in);
    ASSERT_EQ(whole.problem, "") << c->name;
    size_t step = in.size() > 2000 ? 97 : 1;  // the limit cases are long
    for (size_t cut = 0; cut <= in.size(); cut += step) {
      ParseOutcome split = runParser(in, {cut}, false);
      ASSERT_EQ(split, whole) << c->name << " cut at " << cut << "\n whole: " << describe(whole)
                              << "\n split: " << describe(split);
    }
    std::vector<size_t> everyByte;
    for (size_t i = 1; i < in.size(); ++i) everyByte.push_back(i);
    ParseOutcome bytes = runParser(in, everyByte, false);
    ASSERT_EQ(bytes, whole) << c->name << " byte by byte: " << describe(bytes);
    ParseOutcome bytesPaused = runParser(in, everyByte, true);
    ASSERT_EQ(bytesPaused, whole) << c->name << " byte by byte, paused: " << describe(bytesPaused);
    ParseOutcome wholePaused = runParser(in, {}, true);
    ASSERT_EQ(wholePaused, whole) << c->name << " paused: " << describe(wholePaused);
  }
}

TEST(RequestParserTest, SplitAtEveryPairOfOffsetsWithPause) {
  const std::string& in = validCases()[9].input;  // pipelined
  ParseOutcome whole = parseWhole(in);
  for (size_t a = 0; a <= in.size(); a += 3) {
    for (size_t b = a; b <= in.size(); b += 7) {
      ParseOutcome split = runParser(in, {a, b}, true);
      ASSERT_EQ(split, whole) << a << "," << b << ": " << describe(split);
    }
  }
}

TEST(RequestParserTest, PauseResumeBuffersPipelinedBytes) {
  struct Pauser : RequestParser::Handler {
    bool onRequest(const Request& req) override {
      targets.emplace_back(req.target);
      return false;
    }
    std::vector<std::string> targets;
  } h;
  RequestParser p(h, Limits{});
  std::string first =
      "GET /first HTTP/1.1\r\nHost: first.example\r\nX-A: 1\r\n\r\nGET /sec";
  std::vector<char> buf(first.begin(), first.end());
  EXPECT_EQ(p.feed(buf.data(), buf.size()), Result::kPaused);
  EXPECT_TRUE(p.paused());
  EXPECT_EQ(h.targets, std::vector<std::string>{"/first"});
  EXPECT_EQ(p.buffered(), 8u);
  // The receive buffer is reused for the next read: the views must not care.
  std::fill(buf.begin(), buf.end(), 'Z');
  std::string more = "ond HTTP/1.1\r\nHost: b\r\n\r\nGET /third HTTP/1.1\r\nHost: c\r\n\r\n";
  EXPECT_EQ(p.feed(more.data(), more.size()), Result::kPaused);
  EXPECT_EQ(p.buffered(), 8u + more.size());
  std::fill(more.begin(), more.end(), 'Z');
  EXPECT_EQ(h.targets.size(), 1u);  // nothing parsed while paused
  EXPECT_EQ(p.buffered(), 8u + more.size());
  const Request& req = p.request();
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/first");
  EXPECT_EQ(req.host, "first.example");
  EXPECT_EQ(req.header("x-a"), "1");
  ASSERT_EQ(req.headers.size(), 2u);
  EXPECT_EQ(req.headers[0].name, "Host");

  EXPECT_EQ(p.resume(), Result::kPaused);
  EXPECT_EQ(h.targets, (std::vector<std::string>{"/first", "/second"}));
  EXPECT_EQ(p.request().host, "b");
  EXPECT_EQ(p.resume(), Result::kPaused);
  EXPECT_EQ(h.targets.size(), 3u);
  EXPECT_EQ(p.request().target, "/third");
  EXPECT_EQ(p.resume(), Result::kOk);
  EXPECT_FALSE(p.paused());
  EXPECT_EQ(p.buffered(), 0u);
  EXPECT_EQ(p.phase(), Phase::kIdle);
  // The parser is usable again, with a head that spans feeds.
  std::string a = "GET /fourth HTTP/1.1\r\nHo";
  std::string b = "st: d\r\n\r\n";
  EXPECT_EQ(p.feed(a.data(), a.size()), Result::kOk);
  EXPECT_EQ(p.feed(b.data(), b.size()), Result::kPaused);
  EXPECT_EQ(p.request().target, "/fourth");
  EXPECT_EQ(p.request().host, "d");
  EXPECT_EQ(p.resume(), Result::kOk);
}

TEST(RequestParserTest, PausedRequestWithSplitHeadAndBody) {
  // The paused request's head arrived in pieces; its views live in the parser.
  RecordingHandler rec(true);
  RequestParser p(rec, Limits{});
  std::vector<std::string> pieces = {"POST /p HTTP/1.1\r\nHo", "st: h\r\nContent-Le",
                                     "ngth: 3\r\n\r\nab", "cGET /n HTTP/1.1\r\nHost: n\r\n\r\n"};
  Result r = Result::kOk;
  for (std::string& piece : pieces) {
    r = p.feed(piece.data(), piece.size());
    std::fill(piece.begin(), piece.end(), '#');
  }
  EXPECT_EQ(r, Result::kPaused);
  ASSERT_EQ(rec.done_.size(), 1u);
  EXPECT_EQ(rec.done_[0].body, "abc");
  std::string extra = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(p.feed(extra.data(), extra.size()), Result::kPaused);
  EXPECT_EQ(p.request().target, "/p");
  EXPECT_EQ(p.request().host, "h");
  EXPECT_EQ(p.request().header("content-length"), "3");
  EXPECT_EQ(p.resume(), Result::kPaused);
  EXPECT_EQ(p.request().target, "/n");
  EXPECT_EQ(p.resume(), Result::kPaused);
  EXPECT_EQ(p.request().target, "/x");
  EXPECT_EQ(p.resume(), Result::kOk);
  EXPECT_EQ(rec.done_.size(), 3u);
  EXPECT_EQ(rec.problem_, "");
}

TEST(RequestParserTest, ErrorWhileResuming) {
  RecordingHandler rec(true);
  RequestParser p(rec, Limits{});
  std::string in = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  EXPECT_EQ(p.feed(in.data(), in.size()), Result::kPaused);
  EXPECT_EQ(p.resume(), Result::kError);
  EXPECT_EQ(p.error().status, 400);
  EXPECT_EQ(rec.done_.size(), 1u);
}

TEST(RequestParserTest, ResumeWhenNotPausedIsHarmless) {
  RecordingHandler rec(false);
  RequestParser p(rec, Limits{});
  EXPECT_EQ(p.resume(), Result::kOk);
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(p.feed(in.data(), in.size()), Result::kOk);
  EXPECT_EQ(p.resume(), Result::kOk);
  EXPECT_EQ(rec.done_.size(), 1u);
}

}  // namespace
}  // namespace kuai::parser
