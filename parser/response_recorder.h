// Test support for ResponseParser: a Handler that copies everything it sees
// into owned strings, and a driver that feeds an input in chunks so that tests
// and the fuzz target can compare outcomes. Header-only so a fuzz build needs no
// Bazel. Single-threaded.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parser/response_parser.h"

namespace kuai::parser {

// An owned copy of one response head, its decoded body, and whether it completed.
struct SeenResponse {
  int status = 0;
  int versionMajor = 0;
  int versionMinor = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  bool keepAlive = false;
  bool chunked = false;
  bool upgrade = false;
  bool hasBody = false;
  bool closeDelimited = false;
  int64_t contentLength = -1;
  std::string body;
  std::string trailers;  // as onComplete reported them
  bool complete = false;

  bool operator==(const SeenResponse&) const = default;
};

inline SeenResponse copyHead(const Response& r) {
  SeenResponse s;
  s.status = r.status;
  s.versionMajor = r.versionMajor;
  s.versionMinor = r.versionMinor;
  s.reason = std::string(r.reason);
  for (const Header& h : r.headers) s.headers.emplace_back(h.name, h.value);
  s.keepAlive = r.keepAlive;
  s.chunked = r.chunked;
  s.upgrade = r.upgrade;
  s.hasBody = r.hasBody;
  s.closeDelimited = r.closeDelimited;
  s.contentLength = r.contentLength;
  return s;
}

// What one run of the parser over an input produced.
struct ResponseOutcome {
  std::vector<SeenResponse> responses;  // every head reported, interim ones included
  int status = 0;                       // error status, 0 when no error
  std::string reason;                   // error reason
  size_t upgradeAt = std::string_view::npos;  // input offset where the new protocol starts
  bool finished = false;                // finish() was called and returned kOk
  bool midMessage = false;              // after the last call
  ResponseParser::Phase phase = ResponseParser::Phase::kIdle;
  std::string problem;                  // consistency problems seen during the run

  bool operator==(const ResponseOutcome&) const = default;
};

class ResponseRecorder : public ResponseParser::Handler {
 public:
  void onHeaders(const Response& resp) override {
    if (!seen_.empty() && !seen_.back().complete) note("onHeaders before the last onComplete");
    seen_.push_back(copyHead(resp));
  }
  void onBody(std::string_view chunk) override {
    if (seen_.empty() || seen_.back().complete) {
      note("onBody outside a message");
      return;
    }
    if (chunk.empty()) note("empty onBody");
    seen_.back().body.append(chunk);
  }
  void onComplete(const Response& resp) override {
    if (seen_.empty() || seen_.back().complete) {
      note("onComplete without onHeaders");
      return;
    }
    // The head must read the same at the end of the message as at onHeaders.
    SeenResponse now = copyHead(resp);
    now.body = seen_.back().body;
    if (!(now == seen_.back())) note("head changed between onHeaders and onComplete");
    if (!resp.trailers.empty() && !resp.chunked) note("trailers without a chunked body");
    seen_.back().trailers = std::string(resp.trailers);
    seen_.back().complete = true;
  }

  void note(const std::string& what) {
    if (problem_.empty()) problem_ = what;
  }

  std::vector<SeenResponse> seen_;
  std::string problem_;
};

struct RunOptions {
  bool headRequest = false;
  bool connectRequest = false;
  bool finish = false;  // call finish() after the last feed (upstream EOF)
};

// Feeds `input` cut at the ascending offsets in `cuts`, after one reset().
// Every chunk is fed from its own heap copy that is scribbled over and freed
// right after feed(), so a view left pointing into a fed buffer shows up (and
// trips ASan).
inline ResponseOutcome runResponseParser(std::string_view input, const std::vector<size_t>& cuts,
                                         const RunOptions& opt = {},
                                         const Limits& limits = Limits{}) {
  ResponseRecorder rec;
  ResponseParser parser(rec, limits);
  parser.reset(opt.headRequest, opt.connectRequest);
  ResponseOutcome out;
  using Result = ResponseParser::Result;
  Result last = Result::kOk;

  size_t pos = 0;
  for (size_t i = 0; i <= cuts.size() && last == Result::kOk; ++i) {
    size_t end = i < cuts.size() ? std::min(cuts[i], input.size()) : input.size();
    if (end < pos) end = pos;
    std::vector<char> chunk(input.begin() + pos, input.begin() + end);
    last = parser.feed(chunk.data(), chunk.size());
    std::fill(chunk.begin(), chunk.end(), '\x7f');
    if (last == Result::kUpgrade) {
      if (parser.upgradeOffset() > chunk.size()) rec.note("upgradeOffset past the feed");
      out.upgradeAt = pos + parser.upgradeOffset();
    }
    pos = end;
  }
  if (opt.finish && last == Result::kOk) {
    last = parser.finish();
    out.finished = last == Result::kOk;
  }

  out.responses = std::move(rec.seen_);
  out.status = parser.error().status;
  out.reason = parser.error().reason;
  if (last == Result::kError && out.status == 0) rec.note("kError without a status");
  if (last != Result::kError && out.status != 0) rec.note("status set without kError");
  if (last == Result::kError && out.status != 502) rec.note("upstream error other than 502");
  out.midMessage = parser.midMessage();
  out.phase = parser.phase();
  out.problem = rec.problem_;
  return out;
}

inline ResponseOutcome parseResponse(std::string_view input, const RunOptions& opt = {},
                                     const Limits& limits = Limits{}) {
  return runResponseParser(input, {}, opt, limits);
}

// Whether two runs over the same bytes agree. A size bound is checked as a
// feed ends, so when a head (or trailer section) is both too large and
// malformed further on, a split feed can meet the bound before the whole feed
// meets the bad byte: both refuse the same response, for different reasons.
inline bool sameOutcome(const ResponseOutcome& a, const ResponseOutcome& b) {
  if (a == b) return true;
  auto sized = [](const std::string& r) {
    return r == "header too large" || r == "trailers too large" || r == "too many headers" ||
           r == "status line too long";
  };
  ResponseOutcome x = a, y = b;
  x.reason = y.reason = "";
  return x == y && a.status != 0 && (sized(a.reason) || sized(b.reason));
}

// One line describing an outcome, for failure messages.
inline std::string describe(const ResponseOutcome& o) {
  std::string s = "status=" + std::to_string(o.status);
  if (o.status) s += " (" + o.reason + ")";
  s += " responses=" + std::to_string(o.responses.size()) +
       " phase=" + std::to_string(int(o.phase)) + " mid=" + std::to_string(o.midMessage) +
       " finished=" + std::to_string(o.finished);
  if (o.upgradeAt != std::string_view::npos) s += " upgradeAt=" + std::to_string(o.upgradeAt);
  for (const SeenResponse& r : o.responses) {
    s += " [" + std::to_string(r.status) + " h=" + std::to_string(r.headers.size()) +
         " body=" + std::to_string(r.body.size()) + (r.complete ? " done" : "") +
         (r.keepAlive ? " ka" : "") + (r.closeDelimited ? " eof" : "") + "]";
  }
  if (!o.problem.empty()) s += " problem=" + o.problem;
  return s;
}

}  // namespace kuai::parser
