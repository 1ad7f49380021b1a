// Replays the shared seed corpus (directory in env KUAI_CORPUS) through
// RequestParser: h2o's HTTP/1 fuzzing inputs must parse the same whole and
// split, and llhttp's own test cases must keep our strictness.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "llhttp.h"
#include "parser/llhttp_cases.h"
#include "parser/parse_recorder.h"
#include "parser/request_parser.h"

namespace kuai::parser {
namespace {

namespace fs = std::filesystem;

std::string corpusDir() {
  const char* dir = std::getenv("KUAI_CORPUS");
  return dir ? std::string(dir) : std::string();
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Fails the calling test unless KUAI_CORPUS names a readable directory.
#define REQUIRE_CORPUS(dir)                                                              \
  const std::string dir = corpusDir();                                                   \
  ASSERT_FALSE(dir.empty())                                                              \
      << "KUAI_CORPUS is not set: run bazel test -c opt "                                \
         "--test_env=KUAI_CORPUS=/abs/path/to/corpus (e.g. /work/shared/corpus)";        \
  ASSERT_TRUE(fs::is_directory(dir)) << "KUAI_CORPUS=" << dir << " is not a directory"

TEST(RequestParserCorpusTest, H2oInputsParseTheSameWholeAndSplit) {
  REQUIRE_CORPUS(dir);
  fs::path h2o = fs::path(dir) / "h2o-http1";
  ASSERT_TRUE(fs::is_directory(h2o)) << h2o;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(h2o)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GT(files.size(), 1000u) << "expected the h2o corpus in " << h2o;

  size_t accepted = 0, rejected = 0, requests = 0;
  for (const fs::path& f : files) {
    std::string in = readFile(f);
    ParseOutcome whole = parseWhole(in);
    ASSERT_EQ(whole.problem, "") << f;
    ParseOutcome wholePaused = runParser(in, {}, true);
    ASSERT_EQ(wholePaused, whole) << f << " paused: " << describe(wholePaused)
                                  << " whole: " << describe(whole);
    size_t n = in.size();
    for (size_t cut : {size_t(1), n / 3, n / 2, n > 0 ? n - 1 : 0}) {
      ParseOutcome split = runParser(in, {cut}, false);
      ASSERT_EQ(split, whole) << f << " cut " << cut << ": " << describe(split)
                              << " whole: " << describe(whole);
    }
    ParseOutcome three = runParser(in, {n / 4, n / 2, 3 * n / 4}, true);
    ASSERT_EQ(three, whole) << f << " three cuts, paused: " << describe(three);
    if (whole.status) {
      ++rejected;
    } else {
      ++accepted;
    }
    requests += whole.requests.size();
  }
  std::cout << "h2o corpus: " << files.size() << " inputs, " << accepted << " without error, "
            << rejected << " rejected, " << requests << " requests\n";
  EXPECT_GT(requests, 100u);
}

// llhttp alone, strict, no callbacks: HPE_OK (or an upgrade pause) when it takes
// the message.
llhttp_errno_t strictLlhttp(const std::string& raw) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &settings);
  return llhttp_execute(&p, raw.data(), raw.size());
}

bool isError(const std::string& log) {
  return log.find(" error code=") != std::string::npos &&
         log.find("CONNECT/Upgrade") == std::string::npos;
}

// HTTP/1.1 requests in llhttp's tests rarely carry Host, which kuai requires:
// give every HTTP/1.1 request line one when the message has none.
std::string withHost(const std::string& raw) {
  std::string lower = raw;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (lower.find("\r\nhost:") != std::string::npos) return raw;
  std::string out;
  const std::string line = " HTTP/1.1\r\n";
  size_t pos = 0;
  for (size_t hit = raw.find(line); hit != std::string::npos; hit = raw.find(line, pos)) {
    out.append(raw, pos, hit + line.size() - pos);
    out += "Host: h\r\n";
    pos = hit + line.size();
  }
  out.append(raw, pos, std::string::npos);
  return out;
}

// Reasons kuai's own rules give; a strict-valid llhttp case may only fail with these.
const std::set<std::string>& policyReasons() {
  static const std::set<std::string> reasons = {
      "missing Host header",
      "more than one Host header",
      "invalid character in header value",
      "bad header value",
      "unsupported Transfer-Encoding",
      "repeated chunked encoding",
      "both Content-Length and Transfer-Encoding",
      "Transfer-Encoding in an HTTP/1.0 request",
      "HTTP version not supported",
      "more than one Content-Length",
      "malformed Content-Length",
      "unsupported expectation",
  };
  return reasons;
}

TEST(RequestParserCorpusTest, LlhttpCasesKeepStrictness) {
  REQUIRE_CORPUS(dir);
  fs::path md = fs::path(dir) / "llhttp";
  ASSERT_TRUE(fs::is_directory(md)) << md;
  std::vector<MdCase> cases;
  for (const auto& e : fs::directory_iterator(md)) {
    if (e.is_regular_file() && e.path().extension() == ".md") {
      std::vector<MdCase> more = readMarkdownCases(e.path());
      cases.insert(cases.end(), more.begin(), more.end());
    }
  }
  ASSERT_GT(cases.size(), 100u);

  // Raw messages that llhttp's default (non-lenient) mode must refuse.
  std::map<std::string, std::string> strictErrors;  // raw message -> its log
  for (const MdCase& c : cases) {
    if (c.type == "request" && isError(c.log)) strictErrors[c.raw] = c.log;
  }
  const std::string afterClose = "Data after `Connection: close`";

  size_t lenientRejected = 0, lenientTotal = 0, validParsed = 0, validTotal = 0, invalidRejected = 0;
  for (const MdCase& c : cases) {
    if (c.type.rfind("request", 0) != 0) continue;
    std::string where = c.file + " " + c.heading + " (" + c.type + ")";
    bool lenient = c.type.find("lenient") != std::string::npos ||
                   c.heading.find("lenient") != std::string::npos ||
                   c.file.find("lenient") != std::string::npos;
    bool paused = c.meta.find("\"pause\"") != std::string::npos ||
                  c.meta.find("skipBody") != std::string::npos;
    bool upgrade = c.log.find("CONNECT/Upgrade") != std::string::npos ||
                   c.log.find("upgrade") != std::string::npos;
    bool finishOnly = c.type == "request-finish";

    // Whatever the case, the parser agrees with itself however the bytes arrive.
    for (const std::string& raw : {c.raw, withHost(c.raw)}) {
      ParseOutcome whole = parseWhole(raw);
      ASSERT_EQ(whole.problem, "") << where;
      for (size_t cut = 0; cut <= raw.size(); ++cut) {
        ParseOutcome split = runParser(raw, {cut}, cut % 2 == 1);
        ASSERT_EQ(split, whole) << where << " cut " << cut << ": " << describe(split)
                                << " whole: " << describe(whole);
      }
    }

    llhttp_errno_t strict = strictLlhttp(c.raw);
    bool strictOk = strict == HPE_OK || strict == HPE_PAUSED_UPGRADE;
    ParseOutcome ours = parseWhole(withHost(c.raw));
    if (lenient) {
      ++lenientTotal;
      // Leniency is what a case relies on when strict llhttp refuses it: so must we.
      auto twin = strictErrors.find(c.raw);
      if (twin != strictErrors.end() && twin->second.find(afterClose) != std::string::npos) {
        // The server closes after such a request; what follows is never a request.
        EXPECT_TRUE(ours.status != 0 || (!ours.requests.empty() && !ours.requests[0].keepAlive))
            << where << ": " << describe(ours);
        ++lenientRejected;
      } else if (!strictOk || twin != strictErrors.end()) {
        EXPECT_NE(ours.status, 0) << where << " relies on leniency but was accepted: " << describe(ours);
        if (ours.status) ++lenientRejected;
      }
      continue;
    }
    if (paused || finishOnly) continue;
    if (upgrade) continue;  // the bytes after it are a tunnel, not HTTP
    bool expectError = isError(c.log);
    if (c.log.find(afterClose) != std::string::npos) {
      // The server closes after such a request; what follows is never a request.
      EXPECT_TRUE(ours.status != 0 || (!ours.requests.empty() && !ours.requests[0].keepAlive))
          << where << ": " << describe(ours);
      continue;
    }
    if (c.heading.find("in strict mode") != std::string::npos) {
      continue;  // llhttp's compile-time strict mode only (UTF-8 in the path): kuai allows it
    }
    if (expectError) {
      // llhttp refuses it even in its default mode: we refuse too.
      EXPECT_NE(ours.status, 0) << where << ": " << describe(ours);
      if (ours.status) ++invalidRejected;
      continue;
    }
    if (!strictOk) continue;  // not an llhttp-8.1 strict case (the corpus is newer)
    ++validTotal;
    if (ours.status == 0) {
      ++validParsed;
      EXPECT_EQ(ours.requests.size(), countOf(c.log, "message complete")) << where << ": " << describe(ours);
    } else {
      RecordingHandler rec(false);
      RequestParser p(rec, Limits{});
      std::string raw = withHost(c.raw);
      p.feed(raw.data(), raw.size());
      EXPECT_TRUE(policyReasons().count(p.error().reason))
          << where << " valid for llhttp, refused for \"" << p.error().reason << "\" (" << p.error().status << ")";
    }
  }
  std::cout << "llhttp cases: " << cases.size() << " total; lenient " << lenientTotal
            << " (rejected where strict llhttp refuses: " << lenientRejected << "); valid "
            << validTotal << " (parsed " << validParsed << "); invalid rejected " << invalidRejected
            << "\n";
  EXPECT_GT(lenientRejected, 10u);
  EXPECT_GT(validParsed, 20u);
  EXPECT_GT(invalidRejected, 20u);
}

}  // namespace
}  // namespace kuai::parser
