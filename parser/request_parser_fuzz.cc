// libFuzzer target for RequestParser: each input (after its first byte) is parsed
// whole, split at an offset taken from the first byte, split with the handler
// pausing at every request, and byte-splits around that offset; every run must
// give the same requests and the same error (see sameOutcome), else
// __builtin_trap. Built by
// tools/fuzz; with parser/fuzz_replay_main.cc it is a plain binary that
// replays the files named on its command line.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "parser/parse_recorder.h"
#include "parser/request_parser.h"

namespace {

using kuai::parser::Limits;
using kuai::parser::ParseOutcome;

void mustMatch(const ParseOutcome& whole, const ParseOutcome& other, const char* what) {
  if (kuai::parser::sameOutcome(whole, other) && other.problem.empty()) return;
  std::fprintf(stderr, "mismatch (%s)\n whole: %s\n other: %s\n", what,
               kuai::parser::describe(whole).c_str(), kuai::parser::describe(other).c_str());
  __builtin_trap();
}

void check(std::string_view in, size_t cut, const Limits& limits) {
  ParseOutcome whole = kuai::parser::runParser(in, {}, false, limits);
  if (!whole.problem.empty()) mustMatch(whole, whole, "whole run");
  mustMatch(whole, kuai::parser::runParser(in, {cut}, false, limits), "split");
  mustMatch(whole, kuai::parser::runParser(in, {cut}, true, limits), "split, paused");
  mustMatch(whole, kuai::parser::runParser(in, {}, true, limits), "whole, paused");
  std::vector<size_t> around;
  for (size_t i = cut; i < in.size() && i < cut + 8; ++i) around.push_back(i);
  mustMatch(whole, kuai::parser::runParser(in, around, true, limits), "byte-split, paused");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t cut = in.size() * data[0] / 255;
  check(in, cut, Limits{});
  // Small limits reach the 413/414/431 paths with short inputs.
  Limits tight;
  tight.maxRequestLine = 96;
  tight.maxFieldSize = 64;
  tight.maxHeaderBytes = 256;
  tight.maxHeaders = 8;
  tight.maxBodyBytes = 64;
  check(in, cut, tight);
  return 0;
}
