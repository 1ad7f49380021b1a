// libFuzzer target for ResponseParser: the first byte of an input picks a split
// offset, the second how the response is asked for (HEAD, CONNECT, EOF after
// it); the rest is parsed whole, split at that offset, in three pieces around
// it, and byte by byte around it, with default and with tight limits. Every run
// must give the same heads, bodies and outcome (see sameOutcome) and no
// recorder complaint, else __builtin_trap. Built and run by tools/fuzz
// (`tools/fuzz response`); with parser/fuzz_replay_main.cc in place of
// libFuzzer it is a plain binary that replays the files named on its command
// line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "parser/response_parser.h"
#include "parser/response_recorder.h"

namespace {

using kuai::parser::Limits;
using kuai::parser::ResponseOutcome;
using kuai::parser::RunOptions;

void mustMatch(const ResponseOutcome& whole, const ResponseOutcome& other, const char* what) {
  if (kuai::parser::sameOutcome(whole, other) && other.problem.empty()) return;
  std::fprintf(stderr, "mismatch (%s)\n whole: %s\n other: %s\n", what,
               kuai::parser::describe(whole).c_str(), kuai::parser::describe(other).c_str());
  __builtin_trap();
}

void check(std::string_view in, size_t cut, const RunOptions& opt, const Limits& limits) {
  ResponseOutcome whole = kuai::parser::runResponseParser(in, {}, opt, limits);
  if (!whole.problem.empty()) mustMatch(whole, whole, "whole run");
  mustMatch(whole, kuai::parser::runResponseParser(in, {cut}, opt, limits), "split");
  mustMatch(whole, kuai::parser::runResponseParser(in, {cut / 2, cut, cut + (in.size() - cut) / 2}, opt, limits),
            "three pieces");
  std::vector<size_t> around;
  for (size_t i = cut; i < in.size() && i < cut + 8; ++i) around.push_back(i);
  mustMatch(whole, kuai::parser::runResponseParser(in, around, opt, limits), "byte-split");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t cut = in.size() * data[0] / 255;
  RunOptions opt;
  opt.headRequest = data[1] & 1;
  opt.connectRequest = data[1] & 2;
  opt.finish = data[1] & 4;
  check(in, cut, opt, Limits{});
  // Small limits reach the size paths with short inputs.
  Limits tight;
  tight.maxRequestLine = 64;
  tight.maxFieldSize = 48;
  tight.maxHeaderBytes = 192;
  tight.maxHeaders = 8;
  check(in, cut, opt, tight);
  return 0;
}
