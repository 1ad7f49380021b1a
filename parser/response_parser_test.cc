#include "parser/response_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parser/response_recorder.h"

namespace kuai::parser {
namespace {

using Phase = ResponseParser::Phase;
using Result = ResponseParser::Result;

// A response case for the table-driven tests: the input, how it is parsed, and
// what must come of it. `error` null: no error; `statuses`: every head reported,
// in order; `body`: the last head's decoded body.
struct Case {
  const char* name;
  std::string input;
  RunOptions opt;
  const char* error;
  std::vector<int> statuses;
  std::string body;
};

constexpr RunOptions kPlain{};
constexpr RunOptions kEof{false, false, true};
constexpr RunOptions kHead{true, false, false};
constexpr RunOptions kConnect{false, true, false};

// A string literal with embedded NULs, whole.
template <size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string manyFields(int n) {
  std::string s = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < n; ++i) s += "X-H" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
  return s + "Content-Length: 0\r\n\r\n";
}

const std::vector<Case>& validCases() {
  static const std::vector<Case> cases = {
      {"content_length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
       kPlain, nullptr, {200}, "hello world"},
      {"content_length_zero", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, nullptr, {200}, ""},
      {"chunked_ext_trailers",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;name=value\r\nhello\r\n6;q=\"quoted str\";x\r\n world\r\n"
       "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
       kPlain, nullptr, {200}, "hello world"},
      {"chunked_hex_no_trailers",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\n\r\n",
       kPlain, nullptr, {200}, "0123456789abcdefghijklmnopqrstuvwxyz"},
      {"chunked_upper_case", "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
       kPlain, nullptr, {200}, "hi"},
      {"close_delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>to the end</html>", kEof,
       nullptr, {200}, "<html>to the end</html>"},
      {"close_delimited_empty", "HTTP/1.1 200 OK\r\n\r\n", kEof, nullptr, {200}, ""},
      {"http10_close_delimited", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nold body", kEof, nullptr, {200},
       "old body"},
      {"http10_keepalive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", kPlain,
       nullptr, {200}, "ok"},
      {"connection_close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", kPlain,
       nullptr, {200}, "ok"},
      {"head_with_length", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", kHead, nullptr, {200}, ""},
      {"head_with_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", kHead, nullptr, {200}, ""},
      {"head_without_length", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", kHead, nullptr, {200}, ""},
      {"no_content", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", kPlain, nullptr, {204}, ""},
      {"not_modified", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n", kPlain,
       nullptr, {304}, ""},
      {"not_modified_chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", kPlain,
       nullptr, {304}, ""},
      {"continue_then_ok",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone", kPlain, nullptr,
       {100, 200}, "done"},
      {"interims_then_chunked",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
       "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       kPlain, nullptr, {100, 102, 103, 200}, "abc"},
      {"interim_with_length_ignored",
       "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", kPlain, nullptr,
       {100, 204}, ""},
      {"interim_http10_then_ok",
       "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", kPlain, nullptr,
       {100, 200}, "x"},
      {"interim_for_head", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", kHead,
       nullptr, {100, 200}, ""},
      {"upgrade_with_trailing_bytes",
       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
       kPlain, nullptr, {101}, ""},
      {"upgrade_without_headers", "HTTP/1.1 101 Switching Protocols\r\n\r\nnot http at all", kPlain, nullptr,
       {101}, ""},
      {"upgrade_after_continue",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nPRI *", kPlain,
       nullptr, {100, 101}, ""},
      {"connect_tunnel", "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01", kConnect, nullptr, {200}, ""},
      {"connect_refused", "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\nno!", kConnect, nullptr, {407},
       "no!"},
      {"no_reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", kPlain, nullptr, {200}, "x"},
      {"empty_reason", "HTTP/1.1 404 \r\nContent-Length: 1\r\n\r\nx", kPlain, nullptr, {404}, "x"},
      {"reason_with_spaces_and_obs_text", "HTTP/1.1 500 Internal  Error \xe9t\xe9\r\nContent-Length: 0\r\n\r\n",
       kPlain, nullptr, {500}, ""},
      {"ows_and_empty_values",
       "HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Pad: \t padded \t\r\nX-Only-Space:   \r\nContent-Length:1\r\n\r\nz",
       kPlain, nullptr, {200}, "z"},
      {"many_fields", manyFields(60), kPlain, nullptr, {200}, ""},
      {"large_body", "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + std::string(3000, 'b'), kPlain,
       nullptr, {200}, std::string(3000, 'b')},
      {"incomplete_head", "HTTP/1.1 200 OK\r\nServer: part", kPlain, nullptr, {}, ""},
      {"incomplete_body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", kPlain, nullptr, {200}, "abc"},
      {"incomplete_chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", kPlain, nullptr,
       {200}, "ab"},
      {"nothing", "", kPlain, nullptr, {}, ""},
  };
  return cases;
}

const std::vector<Case>& invalidCases() {
  static const std::vector<Case> cases = {
      // Framing.
      {"cl_duplicate_same", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", kPlain,
       "invalid Content-Length", {}, ""},
      {"cl_differing", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", kPlain,
       "invalid Content-Length", {}, ""},
      {"cl_list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", kPlain, "invalid Content-Length", {}, ""},
      {"cl_plus", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", kPlain, "invalid Content-Length", {}, ""},
      {"cl_negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", kPlain, "invalid Content-Length", {}, ""},
      {"cl_empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", kPlain, "invalid Content-Length", {}, ""},
      {"cl_overflow", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", kPlain,
       "invalid Content-Length", {}, ""},
      {"cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", kPlain,
       "invalid Content-Length", {}, ""},
      {"te_and_cl", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", kPlain,
       "invalid Content-Length", {}, ""},
      {"te_gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", kEof, "unsupported Transfer-Encoding",
       {}, ""},
      {"te_chunked_not_last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz", kEof,
       "unsupported Transfer-Encoding", {}, ""},
      {"te_gzip_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", kPlain,
       "unsupported Transfer-Encoding", {}, ""},
      {"te_chunked_twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", kPlain,
       "unsupported Transfer-Encoding", {}, ""},
      {"te_two_fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       kPlain, "duplicate Transfer-Encoding", {}, ""},
      {"te_empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", kEof, "unsupported Transfer-Encoding", {}, ""},
      {"te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", kPlain,
       "Transfer-Encoding in an HTTP/1.0 response", {}, ""},
      {"te_on_304_gzip", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", kPlain,
       "unsupported Transfer-Encoding", {}, ""},
      {"cl_dup_on_head", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", kHead,
       "invalid Content-Length", {}, ""},
      // Line structure.
      {"obs_fold", "HTTP/1.1 200 OK\r\nX-Fold: one\r\n two\r\nContent-Length: 0\r\n\r\n", kPlain,
       "obsolete line folding", {}, ""},
      {"obs_fold_tab", "HTTP/1.1 200 OK\r\nX-Fold: one\r\n\ttwo\r\nContent-Length: 0\r\n\r\n", kPlain,
       "obsolete line folding", {}, ""},
      {"leading_space_first_field", "HTTP/1.1 200 OK\r\n Server: x\r\n\r\n", kPlain, "invalid header", {},
       ""},
      {"bare_cr_value", "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {}, ""},
      {"bare_cr_status_line", "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"bare_lf_status_line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {},
       ""},
      {"bare_lf_no_fields", "HTTP/1.1 200 OK\n\r\n", kPlain, "invalid status line", {}, ""},
      {"bare_lf_everywhere", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", kPlain, "invalid header", {}, ""},
      {"bare_lf_field", "HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {}, ""},
      {"cr_then_byte_ends_head", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\rabc", kPlain, "invalid header", {},
       ""},
      {"empty_value_then_cr", "HTTP/1.1 200 OK\r\nX:\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", kPlain,
       "invalid header", {}, ""},
      {"leading_crlf", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"leading_space", " HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      // Status line.
      {"not_http", "HTTPER/1.1 200 OK\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"lowercase_http", "http/1.1 200 OK\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"rtsp", "RTSP/1.0 200 OK\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"http2", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "unsupported HTTP version", {}, ""},
      {"http12", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"http09", "HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "unsupported HTTP version", {}, ""},
      {"two_digit_status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"four_digit_status", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {},
       ""},
      {"leading_zero_status", "HTTP/1.1 0200 OK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {},
       ""},
      {"status_600", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status code", {}, ""},
      {"status_099", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status code", {}, ""},
      {"no_space_after_version", "HTTP/1.1\t200 OK\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"two_spaces_before_status", "HTTP/1.1  200 OK\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"tab_after_status", "HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line", {}, ""},
      {"control_in_reason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid status line",
       {}, ""},
      {"nul_in_reason", bytes("HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n"), kPlain, "invalid status line",
       {}, ""},
      // Fields.
      {"space_before_colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", kPlain, "invalid header", {}, ""},
      {"space_before_colon_te",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", kPlain, "invalid header",
       {}, ""},
      {"empty_name", "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {}, ""},
      {"no_colon", "HTTP/1.1 200 OK\r\nServer\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {}, ""},
      {"bad_name_char", "HTTP/1.1 200 OK\r\nX(y): 1\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {},
       ""},
      {"nul_value", bytes("HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n"), kPlain, "invalid header",
       {}, ""},
      {"nul_name", bytes("HTTP/1.1 200 OK\r\nX\0: a\r\nContent-Length: 0\r\n\r\n"), kPlain, "invalid header", {},
       ""},
      {"control_in_value", "HTTP/1.1 200 OK\r\nX: a\x01z\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header",
       {}, ""},
      {"del_in_value", "HTTP/1.1 200 OK\r\nX: a\x7fz\r\nContent-Length: 0\r\n\r\n", kPlain, "invalid header", {},
       ""},
      // Chunks and trailers.
      {"bad_chunk_size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", kPlain, "bad chunk", {200},
       ""},
      {"chunk_size_overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
       kPlain, "bad chunk", {200}, ""},
      {"chunk_size_space", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nhi\r\n0\r\n\r\n", kPlain,
       "bad chunk", {200}, ""},
      {"chunk_missing_crlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", kPlain,
       "bad chunk", {200}, "abc"},
      {"chunk_bare_lf_size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n", kPlain,
       "bad chunk", {200}, ""},
      {"chunk_bare_lf_data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\n0\r\n\r\n", kPlain,
       "bad chunk", {200}, "hi"},
      {"chunk_ext_bare_cr", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\rX\r\nhi\r\n0\r\n\r\n",
       kPlain, "bad chunk", {200}, ""},
      {"chunk_negative", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nhi\r\n0\r\n\r\n", kPlain,
       "bad chunk", {200}, ""},
      {"trailer_obs_fold", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", kPlain,
       "obsolete line folding", {200}, ""},
      {"trailer_bare_lf_end", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n\n", kPlain,
       "invalid trailer", {200}, ""},
      {"trailer_bare_lf_field", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nY: b\r\n\r\n",
       kPlain, "invalid trailer", {200}, ""},
      {"trailer_cr_then_byte", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX", kPlain,
       "invalid trailer", {200}, ""},
      {"trailer_space_before_colon",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : a\r\n\r\n", kPlain, "invalid trailer", {200},
       ""},
      // After the response.
      {"data_after_response", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n", kPlain,
       "unsolicited response data", {200}, "hi"},
      {"crlf_after_response", "HTTP/1.1 204 No Content\r\n\r\n\r\n", kPlain, "unsolicited response data", {204},
       ""},
      {"data_after_chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", kPlain,
       "unsolicited response data", {200}, ""},
      {"body_after_head_response", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", kHead,
       "unsolicited response data", {200}, ""},
      {"body_after_304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\nhi", kPlain,
       "unsolicited response data", {304}, ""},
      {"connection_close_then_data",
       "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhiXX", kPlain,
       "unsolicited response data", {200}, "hi"},
      // At EOF.
      {"eof_before_response", "", kEof, "closed before a response", {}, ""},
      {"eof_in_status_line", "HTTP/1.1 20", kEof, "truncated head", {}, ""},
      {"eof_in_head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", kEof, "truncated head", {}, ""},
      {"eof_in_body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", kEof, "truncated body", {200}, "hel"},
      {"eof_in_chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", kEof,
       "truncated chunked body", {200}, "hel"},
      {"eof_before_last_chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n", kEof,
       "truncated chunked body", {200}, "hi"},
      {"eof_in_trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", kEof,
       "truncated trailers", {200}, ""},
      {"eof_after_interim", "HTTP/1.1 100 Continue\r\n\r\n", kEof, "truncated response", {100}, ""},
  };
  return cases;
}

// The statuses of every head reported, and the last one's body.
std::vector<int> statusesOf(const ResponseOutcome& o) {
  std::vector<int> s;
  for (const SeenResponse& r : o.responses) s.push_back(r.status);
  return s;
}

// Runs `c` whole, checks it against the case, then at every split offset, at
// every pair of nearby offsets and byte by byte: each run must agree with the
// whole one.
void checkCase(const Case& c, const Limits& limits = Limits{}) {
  SCOPED_TRACE(c.name);
  ResponseOutcome whole = parseResponse(c.input, c.opt, limits);
  EXPECT_EQ(whole.problem, "") << describe(whole);
  if (c.error) {
    EXPECT_EQ(whole.status, 502) << describe(whole);
    EXPECT_EQ(whole.reason, c.error) << describe(whole);
  } else {
    EXPECT_EQ(whole.status, 0) << describe(whole);
  }
  EXPECT_EQ(statusesOf(whole), c.statuses) << describe(whole);
  if (!whole.responses.empty()) {
    EXPECT_EQ(whole.responses.back().body, c.body) << describe(whole);
  }

  const std::string& in = c.input;
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    ResponseOutcome split = runResponseParser(in, {cut}, c.opt, limits);
    ASSERT_TRUE(sameOutcome(whole, split)) << "cut " << cut << ": " << describe(split)
                                           << "\n whole: " << describe(whole);
    ResponseOutcome three = runResponseParser(in, {cut, cut + 1, cut + 7}, c.opt, limits);
    ASSERT_TRUE(sameOutcome(whole, three)) << "cuts " << cut << "+1+7: " << describe(three)
                                           << "\n whole: " << describe(whole);
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < in.size(); ++i) every.push_back(i);
  ResponseOutcome byBytes = runResponseParser(in, every, c.opt, limits);
  ASSERT_TRUE(sameOutcome(whole, byBytes)) << "byte by byte: " << describe(byBytes)
                                           << "\n whole: " << describe(whole);
}

TEST(ResponseParserTest, ValidResponsesAtEverySplit) {
  for (const Case& c : validCases()) checkCase(c);
}

TEST(ResponseParserTest, MalformedResponsesAtEverySplit) {
  for (const Case& c : invalidCases()) checkCase(c);
}

// The fields the handler saw for a few valid cases.
const SeenResponse& finalOf(const ResponseOutcome& o) { return o.responses.back(); }

TEST(ResponseParserTest, ContentLengthResponse) {
  ResponseOutcome o = parseResponse(
      "HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 3\r\nX-Pad:  v  \r\n\r\nabc");
  ASSERT_EQ(o.responses.size(), 1u) << describe(o);
  const SeenResponse& r = finalOf(o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.reason, "Created");
  EXPECT_EQ(r.versionMajor, 1);
  EXPECT_EQ(r.versionMinor, 1);
  EXPECT_EQ(r.contentLength, 3);
  EXPECT_TRUE(r.hasBody);
  EXPECT_FALSE(r.chunked);
  EXPECT_FALSE(r.closeDelimited);
  EXPECT_TRUE(r.keepAlive);
  EXPECT_FALSE(r.upgrade);
  ASSERT_EQ(r.headers.size(), 3u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>("Location", "/x")));
  EXPECT_EQ(r.headers[2], (std::pair<std::string, std::string>("X-Pad", "v")));
  EXPECT_EQ(r.body, "abc");
  EXPECT_EQ(o.phase, Phase::kIdle);
  EXPECT_FALSE(o.midMessage);
}

TEST(ResponseParserTest, ChunkedReportsTrailersApartFromTheHead) {
  ResponseOutcome o = parseResponse(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
      "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0;last\r\nX-Sum: 9\r\n\r\n");
  ASSERT_EQ(o.responses.size(), 1u) << describe(o);
  const SeenResponse& r = finalOf(o);
  EXPECT_TRUE(r.chunked);
  EXPECT_TRUE(r.hasBody);
  EXPECT_EQ(r.contentLength, -1);
  EXPECT_TRUE(r.keepAlive);
  EXPECT_EQ(r.body, "Wikipedia");
  EXPECT_EQ(r.headers.size(), 2u);  // trailers are not added to the head
  EXPECT_EQ(r.trailers, "X-Sum: 9\r\n");
  EXPECT_TRUE(r.complete);

  // Several fields, optional whitespace kept as received; none at all.
  o = parseResponse(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nA: 1\r\nB:2 \r\nA: 3\r\n\r\n");
  ASSERT_EQ(o.responses.size(), 1u) << describe(o);
  EXPECT_EQ(finalOf(o).trailers, "A: 1\r\nB:2 \r\nA: 3\r\n");
  o = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
  ASSERT_EQ(o.responses.size(), 1u) << describe(o);
  EXPECT_EQ(finalOf(o).trailers, "");
  EXPECT_EQ(finalOf(o).body, "hi");
}

TEST(ResponseParserTest, CloseDelimitedCompletesAtFinish) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  std::string in = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\npart one, ";
  ASSERT_EQ(p.feed(in.data(), in.size()), Result::kOk);
  std::string more = "part two";
  ASSERT_EQ(p.feed(more.data(), more.size()), Result::kOk);
  EXPECT_TRUE(p.midMessage());
  EXPECT_EQ(p.phase(), Phase::kBody);
  ASSERT_EQ(rec.seen_.size(), 1u);
  EXPECT_TRUE(rec.seen_[0].closeDelimited);
  EXPECT_FALSE(rec.seen_[0].keepAlive);
  EXPECT_FALSE(rec.seen_[0].complete);
  EXPECT_EQ(p.finish(), Result::kOk);
  EXPECT_TRUE(rec.seen_[0].complete);
  EXPECT_EQ(rec.seen_[0].body, "part one, part two");
  EXPECT_FALSE(p.midMessage());
  EXPECT_EQ(p.phase(), Phase::kIdle);
  EXPECT_EQ(p.finish(), Result::kOk);  // a second EOF changes nothing
  EXPECT_EQ(rec.problem_, "");
}

TEST(ResponseParserTest, KeepAliveRules) {
  auto ka = [](const std::string& in, RunOptions opt = {}) {
    ResponseOutcome o = parseResponse(in, opt);
    EXPECT_EQ(o.status, 0) << in << describe(o);
    return !o.responses.empty() && o.responses.back().keepAlive;
  };
  EXPECT_TRUE(ka("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: close\t\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.1 204 No Content\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.1 200 OK\r\n\r\n", kHead));  // no body to run to EOF
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\n\r\nbody", kEof));
  EXPECT_FALSE(ka("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"));
}

TEST(ResponseParserTest, BodylessResponsesIgnoreFraming) {
  for (const char* in : {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                         "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                         "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"}) {
    ResponseOutcome o = parseResponse(in);
    ASSERT_EQ(o.responses.size(), 1u) << in << describe(o);
    EXPECT_TRUE(o.responses[0].complete) << in;
    EXPECT_FALSE(o.responses[0].hasBody) << in;
    EXPECT_FALSE(o.responses[0].closeDelimited) << in;
    EXPECT_EQ(o.responses[0].body, "") << in;
  }
  ResponseOutcome head = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", kHead);
  ASSERT_EQ(head.responses.size(), 1u);
  EXPECT_EQ(head.responses[0].contentLength, 5);  // as the upstream said, for the client's head
  EXPECT_FALSE(head.responses[0].hasBody);
  EXPECT_TRUE(head.responses[0].complete);
}

TEST(ResponseParserTest, InterimThenFinal) {
  ResponseOutcome o = parseResponse(
      "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_EQ(o.responses.size(), 2u) << describe(o);
  EXPECT_EQ(o.responses[0].status, 100);
  EXPECT_TRUE(o.responses[0].complete);
  EXPECT_FALSE(o.responses[0].hasBody);
  ASSERT_EQ(o.responses[0].headers.size(), 1u);
  EXPECT_EQ(o.responses[1].status, 200);
  EXPECT_EQ(o.responses[1].headers.size(), 1u);  // the interim's fields are not carried over
  EXPECT_EQ(o.responses[1].body, "ok");
  EXPECT_TRUE(o.responses[1].complete);

  // Between the two, the response is under way.
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  ASSERT_EQ(p.feed(interim.data(), interim.size()), Result::kOk);
  EXPECT_TRUE(p.midMessage());
  EXPECT_EQ(p.phase(), Phase::kWaiting);
  EXPECT_EQ(p.finish(), Result::kError);
  EXPECT_EQ(std::string(p.error().reason), "truncated response");
}

TEST(ResponseParserTest, UpgradeReportsWhereTheNewProtocolStarts) {
  std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  std::string in = head + "\x81\x02hi";
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    ResponseOutcome o = runResponseParser(in, {cut});
    ASSERT_EQ(o.upgradeAt, head.size()) << "cut " << cut << describe(o);
    ASSERT_EQ(o.responses.size(), 1u);
    EXPECT_TRUE(o.responses[0].upgrade);
    EXPECT_TRUE(o.responses[0].complete);
    EXPECT_FALSE(o.responses[0].keepAlive);
    EXPECT_EQ(o.phase, Phase::kUpgraded);
    EXPECT_FALSE(o.midMessage);
  }

  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  ASSERT_EQ(p.feed(in.data(), in.size()), Result::kUpgrade);
  EXPECT_EQ(p.upgradeOffset(), head.size());
  EXPECT_EQ(p.finish(), Result::kOk);
  EXPECT_EQ(p.feed("x", 1), Result::kError);  // the rest is not HTTP: not for this parser
}

TEST(ResponseParserTest, ConnectTunnel) {
  std::string head = "HTTP/1.1 200 Connection Established\r\n\r\n";
  std::string in = head + "\x16\x03\x01\x02";
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false, true);
  ASSERT_EQ(p.feed(in.data(), in.size()), Result::kUpgrade);
  EXPECT_EQ(p.upgradeOffset(), head.size());
  ASSERT_EQ(rec.seen_.size(), 1u);
  EXPECT_TRUE(rec.seen_[0].upgrade);
}

TEST(ResponseParserTest, UnsolicitedDataMakesTheConnectionUnusable) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  // Before any request.
  EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\n\r\n", 19), Result::kError);
  EXPECT_EQ(std::string(p.error().reason), "unsolicited response data");
  EXPECT_EQ(p.error().status, 502);
  EXPECT_FALSE(p.midMessage());
  EXPECT_TRUE(rec.seen_.empty());

  // After a complete response, on an idle keep-alive connection.
  p.reset(false);
  std::string r1 = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
  ASSERT_EQ(p.feed(r1.data(), r1.size()), Result::kOk);
  EXPECT_EQ(p.phase(), Phase::kIdle);
  EXPECT_EQ(p.feed("\r\n", 2), Result::kError);
  EXPECT_FALSE(p.midMessage());  // the response itself was complete
  EXPECT_EQ(p.finish(), Result::kError);
  EXPECT_EQ(p.feed(r1.data(), r1.size()), Result::kError);  // stays failed

  // reset() starts afresh: two exchanges on one connection.
  p.reset(false);
  ASSERT_EQ(p.feed(r1.data(), r1.size()), Result::kOk);
  p.reset(true);
  std::string r2 = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  ASSERT_EQ(p.feed(r2.data(), r2.size()), Result::kOk);
  EXPECT_EQ(p.phase(), Phase::kIdle);
  EXPECT_EQ(p.error().status, 0);
  ASSERT_EQ(rec.seen_.size(), 3u);
  EXPECT_EQ(rec.seen_[2].contentLength, 10);
  EXPECT_TRUE(rec.seen_[2].complete);
  EXPECT_EQ(rec.problem_, "");
}

TEST(ResponseParserTest, ErrorsMidResponseLeaveItUnderWay) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\nzz\r\n";
  EXPECT_EQ(p.feed(in.data(), in.size()), Result::kError);
  EXPECT_EQ(std::string(p.error().reason), "bad chunk");
  EXPECT_TRUE(p.midMessage());
  EXPECT_EQ(p.phase(), Phase::kError);
}

TEST(ResponseParserTest, EmptyFeedsChangeNothing) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  EXPECT_EQ(p.feed(nullptr, 0), Result::kOk);
  EXPECT_FALSE(p.midMessage());
  std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
  ASSERT_EQ(p.feed(in.data(), in.size()), Result::kOk);
  EXPECT_EQ(p.feed(nullptr, 0), Result::kOk);
  EXPECT_EQ(p.phase(), Phase::kIdle);
}

// Views into the caller's buffer while a head arrives whole; into the parser's
// own copy when it spans feeds, or when its body goes on in later feeds.
class ViewChecker : public ResponseParser::Handler {
 public:
  void onHeaders(const Response& r) override {
    heads++;
    for (const Header& h : r.headers) {
      bool inside = h.name.data() >= buf && h.name.data() + h.name.size() <= buf + len &&
                    h.value.data() >= buf && h.value.data() + h.value.size() <= buf + len;
      if (!inside) outside++;
    }
    contentType = std::string(r.header("content-type"));
    hasServer = r.hasHeader("SERVER");
  }
  void onBody(std::string_view chunk) override {
    if (chunk.data() < buf || chunk.data() + chunk.size() > buf + len) bodyOutside++;
  }
  void onComplete(const Response& r) override {
    completeType = std::string(r.header("Content-Type"));
  }
  const char* buf = nullptr;
  size_t len = 0;
  int heads = 0;
  int outside = 0;
  int bodyOutside = 0;
  bool hasServer = false;
  std::string contentType;
  std::string completeType;
};

TEST(ResponseParserTest, ZeroCopyWhenTheHeadIsInOneBuffer) {
  std::string in = "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
  ViewChecker v;
  ResponseParser p(v, Limits{});
  p.reset(false);
  v.buf = in.data();
  v.len = in.size();
  ASSERT_EQ(p.feed(in.data(), in.size()), Result::kOk);
  EXPECT_EQ(v.heads, 1);
  EXPECT_EQ(v.outside, 0);
  EXPECT_TRUE(v.hasServer);
  EXPECT_EQ(v.contentType, "text/plain");
  EXPECT_EQ(v.completeType, "text/plain");

  // Split inside the head: copied, so the views are not in the second buffer.
  p.reset(false);
  std::string a = in.substr(0, 20), b = in.substr(20);
  v.buf = b.data();
  v.len = b.size();
  v.outside = 0;
  ASSERT_EQ(p.feed(a.data(), a.size()), Result::kOk);
  ASSERT_EQ(p.feed(b.data(), b.size()), Result::kOk);
  EXPECT_EQ(v.heads, 2);
  EXPECT_GT(v.outside, 0);
  EXPECT_EQ(v.bodyOutside, 0);  // the body after a copied head is not copied
  EXPECT_EQ(v.completeType, "text/plain");

  // The body goes on after the head's buffer is gone: the head outlives it.
  p.reset(false);
  std::string head = in.substr(0, in.size() - 1);
  {
    std::string first = head;
    v.buf = first.data();
    v.len = first.size();
    v.outside = 0;
    ASSERT_EQ(p.feed(first.data(), first.size()), Result::kOk);
    EXPECT_EQ(v.outside, 0);
    std::fill(first.begin(), first.end(), '#');
  }
  v.completeType.clear();
  ASSERT_EQ(p.feed("i", 1), Result::kOk);
  EXPECT_EQ(v.completeType, "text/plain");
  EXPECT_EQ(p.response().reason, "OK");
}

Limits tightLimits() {
  Limits l;
  l.maxRequestLine = 40;
  l.maxFieldSize = 32;
  l.maxHeaderBytes = 128;
  l.maxHeaders = 6;
  return l;
}

TEST(ResponseParserTest, Limits) {
  const Limits l = tightLimits();
  std::vector<Case> cases = {
      {"fits", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 2\r\n\r\nok", kPlain, nullptr, {200}, "ok"},
      {"status_line_at_limit", "HTTP/1.1 200 " + std::string(27, 'r') + "\r\nContent-Length: 0\r\n\r\n", kPlain,
       nullptr, {200}, ""},
      {"status_line_too_long", "HTTP/1.1 200 " + std::string(28, 'r') + "\r\nContent-Length: 0\r\n\r\n", kPlain,
       "status line too long", {}, ""},
      {"field_at_limit", "HTTP/1.1 200 OK\r\nX: " + std::string(30, 'v') + "\r\nContent-Length: 0\r\n\r\n", kPlain,
       nullptr, {200}, ""},
      {"field_too_large", "HTTP/1.1 200 OK\r\nX: " + std::string(31, 'v') + "\r\nContent-Length: 0\r\n\r\n",
       kPlain, "header too large", {}, ""},
      {"too_many_fields", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\n\r\n", kPlain,
       "too many headers", {}, ""},
      {"block_too_large",
       "HTTP/1.1 200 OK\r\nA: " + std::string(28, 'a') + "\r\nB: " + std::string(28, 'b') + "\r\nC: " +
           std::string(28, 'c') + "\r\nD: " + std::string(28, 'd') + "\r\nContent-Length: 0\r\n\r\n",
       kPlain, "header too large", {}, ""},
      {"endless_head", "HTTP/1.1 200 OK\r\nX: " + std::string(400, 'v'), kPlain, "header too large", {}, ""},
      {"endless_status_line", "HTTP/1.1 200 " + std::string(400, 'r'), kPlain, "header too large", {}, ""},
      {"endless_whitespace", "HTTP/1.1 200 OK\r\nX:" + std::string(400, ' '), kPlain, "header too large", {}, ""},
      {"trailers_fit", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\n\r\n", kPlain,
       nullptr, {200}, ""},
      {"too_many_trailers",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
       "F: 6\r\nG: 7\r\n\r\n",
       kPlain, "too many headers", {200}, "x"},
      {"trailer_too_large",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + std::string(31, 't') + "\r\n\r\n", kPlain,
       "trailers too large", {200}, ""},
      {"endless_trailers",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + std::string(400, 't'), kPlain,
       "trailers too large", {200}, ""},
      {"body_not_limited", "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + std::string(3000, 'b'), kPlain,
       nullptr, {200}, std::string(3000, 'b')},
  };
  for (const Case& c : cases) checkCase(c, l);
}

// Limits from the defaults: a head at the nginx-like defaults passes, and a
// head far past them fails without unbounded buffering.
TEST(ResponseParserTest, DefaultLimits) {
  checkCase({"hundred_fields", manyFields(99), kPlain, nullptr, {200}, ""});
  checkCase({"too_many_fields", manyFields(100), kPlain, "too many headers", {}, ""});
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  std::string start = "HTTP/1.1 200 OK\r\nX: ";
  ASSERT_EQ(p.feed(start.data(), start.size()), Result::kOk);
  std::string filler(4096, 'v');
  Result r = Result::kOk;
  int feeds = 0;
  while (r == Result::kOk && feeds < 1000) {
    r = p.feed(filler.data(), filler.size());
    ++feeds;
  }
  EXPECT_EQ(r, Result::kError);
  EXPECT_LT(feeds, 20);
  EXPECT_EQ(std::string(p.error().reason), "header too large");
}

TEST(ResponseParserTest, BodyAcrossManyFeeds) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  p.reset(false);
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
  ASSERT_EQ(p.feed(head.data(), head.size()), Result::kOk);
  std::string block(1000, 'z');
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(p.midMessage());
    ASSERT_EQ(p.feed(block.data(), block.size()), Result::kOk);
  }
  EXPECT_FALSE(p.midMessage());
  EXPECT_EQ(p.bodyBytes(), 100000u);
  ASSERT_EQ(rec.seen_.size(), 1u);
  EXPECT_EQ(rec.seen_[0].body.size(), 100000u);
  EXPECT_TRUE(rec.seen_[0].complete);
}

}  // namespace
}  // namespace kuai::parser
