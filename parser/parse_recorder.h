// Test support for RequestParser: a Handler that copies everything it sees into
// owned strings, and a driver that feeds an input in chunks (optionally pausing
// at every request) so that tests and the fuzz target can compare outcomes.
// Header-only so the fuzz script can build it without Bazel. Single-threaded.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parser/request_parser.h"

namespace kuai::parser {

// An owned copy of one request: head fields and the decoded body.
struct SeenRequest {
  std::string method;
  std::string target;
  std::string host;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int versionMajor = 0;
  int versionMinor = 0;
  bool keepAlive = false;
  bool expectContinue = false;
  bool chunked = false;
  bool isHead = false;
  bool upgrade = false;
  bool bodyless = false;
  int64_t contentLength = -1;

  bool operator==(const SeenRequest&) const = default;
};

inline SeenRequest copyHead(const Request& r) {
  SeenRequest s;
  s.method = std::string(r.method);
  s.target = std::string(r.target);
  s.host = std::string(r.host);
  for (const Header& h : r.headers) s.headers.emplace_back(h.name, h.value);
  s.versionMajor = r.versionMajor;
  s.versionMinor = r.versionMinor;
  s.keepAlive = r.keepAlive;
  s.expectContinue = r.expectContinue;
  s.chunked = r.chunked;
  s.isHead = r.isHead;
  s.upgrade = r.upgrade;
  s.bodyless = r.bodyless;
  s.contentLength = r.contentLength;
  return s;
}

// What one run of the parser over an input produced.
struct ParseOutcome {
  std::vector<SeenRequest> requests;
  int status = 0;  // error status, 0 when no error
  RequestParser::Phase phase = RequestParser::Phase::kIdle;
  // Consistency problems seen during the run (empty when none).
  std::string problem;

  bool operator==(const ParseOutcome& o) const {
    return requests == o.requests && status == o.status && phase == o.phase &&
           problem == o.problem;
  }
};

// Records what the parser reports. Owned by the test; pauses at every request
// when pause_ is set.
class RecordingHandler : public RequestParser::Handler {
 public:
  explicit RecordingHandler(bool pause) : pause_(pause) {}

  void onHeaders(const Request& req) override {
    current_ = copyHead(req);
    inRequest_ = true;
  }
  void onBody(const Request& req, std::string_view chunk) override {
    if (!inRequest_) note("onBody before onHeaders");
    current_.body.append(chunk);
  }
  bool onRequest(const Request& req) override {
    if (!inRequest_) note("onRequest before onHeaders");
    SeenRequest s = copyHead(req);
    s.body = current_.body;
    // The head must read the same at the end of the request as at onHeaders.
    SeenRequest head = current_;
    head.body = s.body;
    if (!(head == s)) note("head changed between onHeaders and onRequest");
    done_.push_back(std::move(s));
    inRequest_ = false;
    current_ = {};
    return !pause_;
  }

  void note(const std::string& what) {
    if (problem_.empty()) problem_ = what;
  }

  bool pause_;
  bool inRequest_ = false;
  SeenRequest current_;
  std::vector<SeenRequest> done_;
  std::string problem_;
};

// Feeds `input` cut at the ascending offsets in `cuts`. Every chunk is fed from
// its own heap copy that is scribbled over and freed right after feed(), so a
// view left pointing into a fed buffer shows up (and trips ASan). With `pause`,
// the handler pauses at every request; a paused parser gets the next chunk
// buffered before it is resumed, and the paused request's views are checked
// against the copy taken at onRequest just before resume().
inline ParseOutcome runParser(std::string_view input, const std::vector<size_t>& cuts,
                              bool pause, const Limits& limits = Limits{}) {
  RecordingHandler rec(pause);
  RequestParser parser(rec, limits);
  bool failed = false;

  auto settle = [&] {
    while (!failed && parser.paused()) {
      if (rec.done_.empty()) {
        rec.note("paused without a request");
      } else {
        SeenRequest now = copyHead(parser.request());
        now.body = rec.done_.back().body;
        if (!(now == rec.done_.back())) rec.note("paused request's views changed");
      }
      if (parser.resume() == RequestParser::Result::kError) failed = true;
    }
  };

  size_t pos = 0;
  for (size_t i = 0; i <= cuts.size() && !failed; ++i) {
    size_t end = i < cuts.size() ? std::min(cuts[i], input.size()) : input.size();
    if (end < pos) end = pos;
    bool wasPaused = parser.paused();
    std::vector<char> chunk(input.begin() + pos, input.begin() + end);
    RequestParser::Result r = parser.feed(chunk.data(), chunk.size());
    std::fill(chunk.begin(), chunk.end(), '\x7f');
    pos = end;
    if (r == RequestParser::Result::kError) failed = true;
    if (r == RequestParser::Result::kPaused && !parser.paused()) rec.note("kPaused but not paused()");
    if (wasPaused) settle();
  }
  settle();

  ParseOutcome out;
  out.requests = std::move(rec.done_);
  out.status = parser.error().status;
  if (failed && out.status == 0) rec.note("kError without a status");
  if (!failed && out.status != 0) rec.note("status set without kError");
  out.phase = parser.phase();
  out.problem = rec.problem_;
  return out;
}

inline ParseOutcome parseWhole(std::string_view input, const Limits& limits = Limits{}) {
  return runParser(input, {}, false, limits);
}

// Whether two runs over the same bytes agree. A size limit is checked as spans
// arrive, so when a request is both too long and malformed further on, a split
// feed can meet the limit (413/414/431) before llhttp meets the bad byte that
// the whole feed fails on: both refuse the same request, with different statuses.
inline bool sameOutcome(const ParseOutcome& a, const ParseOutcome& b) {
  if (a == b) return true;
  auto limit = [](int s) { return s == 413 || s == 414 || s == 431; };
  return a.requests == b.requests && a.phase == b.phase && a.problem == b.problem &&
         a.status != 0 && b.status != 0 && (limit(a.status) || limit(b.status));
}

// One line describing an outcome, for failure messages.
inline std::string describe(const ParseOutcome& o) {
  std::string s = "status=" + std::to_string(o.status) +
                  " requests=" + std::to_string(o.requests.size()) +
                  " phase=" + std::to_string(int(o.phase));
  for (const SeenRequest& r : o.requests) {
    s += " [" + r.method + " " + r.target + " h=" + std::to_string(r.headers.size()) +
         " body=" + std::to_string(r.body.size()) + "]";
  }
  if (!o.problem.empty()) s += " problem=" + o.problem;
  return s;
}

}  // namespace kuai::parser
