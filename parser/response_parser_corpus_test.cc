// Replays llhttp's response test cases from the shared seed corpus (directory
// in env KUAI_CORPUS, cases in llhttp/response/*.md) through ResponseParser:
// every case parses the same whole and split, what llhttp's strict mode
// refuses we refuse, what it takes we take (or refuse for one of kuai's own
// stricter rules). Skipped when KUAI_CORPUS is unset.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "llhttp.h"
#include "parser/llhttp_cases.h"
#include "parser/response_parser.h"
#include "parser/response_recorder.h"

namespace kuai::parser {
namespace {

namespace fs = std::filesystem;
using Result = ResponseParser::Result;

// llhttp alone, strict: HPE_OK (or an upgrade pause) when it takes the bytes.
// With skipBody, every head is a HEAD request's (as llhttp's harness does it).
llhttp_errno_t strictLlhttp(const std::string& raw, bool skipBody) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  if (skipBody) settings.on_headers_complete = [](llhttp_t*) { return 1; };
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &settings);
  return llhttp_execute(&p, raw.data(), raw.size());
}

// What a proxy sees over one connection: the bytes one at a time, a reset()
// before each response (so a second response is taken as the next request's).
struct Replay {
  std::vector<SeenResponse> responses;
  int status = 0;
  std::string reason;
  size_t upgradeAt = std::string::npos;
  size_t finals = 0;  // complete final responses
};

Replay replay(const std::string& raw, bool head) {
  ResponseRecorder rec;
  ResponseParser p(rec, Limits{});
  Replay out;
  p.reset(head);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (p.phase() == ResponseParser::Phase::kIdle) {
      ++out.finals;
      p.reset(head);
    }
    Result r = p.feed(raw.data() + i, 1);
    if (r == Result::kUpgrade) {
      out.upgradeAt = i + 1;
      break;
    }
    if (r == Result::kError) break;
  }
  if (p.phase() == ResponseParser::Phase::kIdle) ++out.finals;
  out.responses = std::move(rec.seen_);
  out.status = p.error().status;
  out.reason = p.error().reason;
  EXPECT_EQ(rec.problem_, "");
  return out;
}

bool isError(const std::string& log) {
  return log.find(" error code=") != std::string::npos &&
         log.find("CONNECT/Upgrade") == std::string::npos;
}

std::vector<int> logStatuses(const std::string& log) {
  std::vector<int> out;
  static const std::regex re("headers complete status=([0-9]+)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back(std::stoi((*it)[1]));
  }
  return out;
}

// Reasons kuai's own rules give; a case strict llhttp takes may only fail with these.
const std::set<std::string>& policyReasons() {
  static const std::set<std::string> reasons = {
      "invalid status line",  // RTSP/ and ICE/, empty lines before a status line
      "invalid status code",
      "unsupported HTTP version",
      "unsupported Transfer-Encoding",
      "duplicate Transfer-Encoding",
      "Transfer-Encoding in an HTTP/1.0 response",
      "invalid Content-Length",
  };
  return reasons;
}

TEST(ResponseParserCorpusTest, LlhttpResponseCases) {
  const char* env = std::getenv("KUAI_CORPUS");
  if (!env || !*env) {
    GTEST_SKIP() << "KUAI_CORPUS is not set: run bazel test -c opt "
                    "--test_env=KUAI_CORPUS=/abs/path/to/corpus (e.g. /work/shared/corpus)";
  }
  fs::path dir = fs::path(env) / "llhttp" / "response";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " is not a directory";
  std::vector<MdCase> cases = readMarkdownDir(dir);
  ASSERT_GT(cases.size(), 50u);

  // Raw messages that llhttp's default (non-lenient) mode must refuse.
  std::map<std::string, std::string> strictErrors;
  for (const MdCase& c : cases) {
    if (c.type == "response" && isError(c.log)) strictErrors[c.raw] = c.log;
  }
  const std::string afterClose = "Data after `Connection: close`";
  const bool verbose = std::getenv("KUAI_VERBOSE") != nullptr;

  size_t total = 0, splitChecked = 0, lenient = 0, lenientRejected = 0, valid = 0, validParsed = 0,
         invalidRejected = 0, upgrades = 0;
  for (const MdCase& c : cases) {
    if (c.type.rfind("response", 0) != 0) continue;
    ++total;
    std::string where = c.file + " " + c.heading + " (" + c.type + ")";
    bool head = c.meta.find("skipBody") != std::string::npos;
    Replay ours = replay(c.raw, head);

    // One exchange: the parser agrees with itself however the bytes arrive,
    // with and without an EOF after them.
    if (ours.finals <= 1) {
      ++splitChecked;
      for (bool eof : {false, true}) {
        RunOptions opt{head, false, eof};
        ResponseOutcome whole = parseResponse(c.raw, opt);
        ASSERT_EQ(whole.problem, "") << where;
        for (size_t cut = 0; cut <= c.raw.size(); ++cut) {
          ResponseOutcome split = runResponseParser(c.raw, {cut}, opt);
          ASSERT_TRUE(sameOutcome(whole, split)) << where << " cut " << cut << ": " << describe(split)
                                                 << "\n whole: " << describe(whole);
        }
      }
    }

    llhttp_errno_t strict = strictLlhttp(c.raw, head);
    bool strictOk = strict == HPE_OK || strict == HPE_PAUSED_UPGRADE;
    if (c.type != "response" && c.type != "response-finish") {
      ++lenient;
      // Leniency is what a case relies on when strict llhttp refuses it: so must we.
      auto twin = strictErrors.find(c.raw);
      if (twin != strictErrors.end() && twin->second.find(afterClose) != std::string::npos) {
        // What follows a Connection: close response is never a response.
        EXPECT_TRUE(ours.status != 0 || (!ours.responses.empty() && !ours.responses[0].keepAlive))
            << where;
        ++lenientRejected;
      } else if (!strictOk || twin != strictErrors.end()) {
        EXPECT_NE(ours.status, 0) << where << " relies on leniency but was accepted";
        if (ours.status) ++lenientRejected;
      } else if (verbose) {
        std::cout << "lenient case strict llhttp takes: " << where << ": " << ours.reason << "\n";
      }
      continue;
    }
    if (c.log.find(afterClose) != std::string::npos) {
      EXPECT_TRUE(ours.status != 0 || (!ours.responses.empty() && !ours.responses[0].keepAlive)) << where;
      continue;
    }
    if (c.log.find("CONNECT/Upgrade") != std::string::npos) {
      // A 101: we stop where llhttp does, at the end of its head.
      std::smatch m;
      static const std::regex re("off=([0-9]+) error code=22");
      ASSERT_TRUE(std::regex_search(c.log, m, re)) << where;
      EXPECT_EQ(ours.upgradeAt, size_t(std::stoul(m[1]))) << where << " " << ours.reason;
      ++upgrades;
      continue;
    }
    if (isError(c.log)) {
      EXPECT_NE(ours.status, 0) << where;
      if (ours.status) ++invalidRejected;
      continue;
    }
    if (!strictOk) continue;  // not an llhttp-8.1 strict case (the corpus is newer)
    ++valid;
    if (ours.status == 0) {
      ++validParsed;
      EXPECT_EQ(ours.responses.size(), logStatuses(c.log).size()) << where;
      std::vector<int> statuses;
      for (const SeenResponse& r : ours.responses) statuses.push_back(r.status);
      EXPECT_EQ(statuses, logStatuses(c.log)) << where;
      size_t completes = 0;
      for (const SeenResponse& r : ours.responses) completes += r.complete;
      EXPECT_EQ(completes, countOf(c.log, "message complete")) << where;
    } else {
      if (verbose) std::cout << "refused by policy: " << where << ": " << ours.reason << "\n";
      EXPECT_TRUE(policyReasons().count(ours.reason))
          << where << " valid for llhttp, refused for \"" << ours.reason << "\"";
    }
  }
  std::cout << "llhttp response cases: " << total << " (split-checked " << splitChecked
            << "); lenient " << lenient << " (rejected where strict llhttp refuses: "
            << lenientRejected << "); valid " << valid << " (parsed " << validParsed
            << "); invalid rejected " << invalidRejected << "; upgrades " << upgrades << "\n";
  EXPECT_GT(validParsed, 20u);
  EXPECT_GT(invalidRejected, 10u);
  EXPECT_GT(lenientRejected, 3u);
}

}  // namespace
}  // namespace kuai::parser
