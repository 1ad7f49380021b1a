#include "server/byte_ranges.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "parser/http_common.h"

namespace kuai::server {

// If-None-Match: "*" or a list of entity tags, compared weakly (W/ ignored).
bool etagListMatches(std::string_view list, std::string_view etag) {
  size_t i = 0;
  while (i < list.size()) {
    char c = list[i];
    if (c == ' ' || c == '\t' || c == ',') {
      ++i;
      continue;
    }
    if (c == '*') return true;
    if (c == 'W' && i + 1 < list.size() && list[i + 1] == '/') {
      i += 2;
    }
    if (i >= list.size() || list[i] != '"') {  // malformed: skip this element
      i = list.find(',', i);
      if (i == std::string_view::npos) return false;
      continue;
    }
    size_t close = list.find('"', i + 1);
    if (close == std::string_view::npos) return false;
    if (list.substr(i, close + 1 - i) == etag) return true;
    i = close + 1;
  }
  return false;
}

namespace {

// Digits only; saturates instead of overflowing (a huge first byte is then
// simply unsatisfiable).
bool parseRangeNumber(std::string_view s, uint64_t& v) {
  if (s.empty()) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    unsigned d = static_cast<unsigned>(c - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  return true;
}

// More range specs than this in one field: the field is ignored (a full
// 200), as RFC 9110 14.2 allows for sets that look like an attack.
constexpr size_t kMaxRanges = 100;

// One byte-range-spec ("a-b" | "a-" | "-n") against a file of `size` bytes.
RangeResult parseRangeSpec(std::string_view spec, uint64_t size, ByteRange& out) {
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeResult::kIgnore;
  std::string_view first = spec.substr(0, dash);
  std::string_view last = spec.substr(dash + 1);
  if (first.empty()) {
    uint64_t n;
    if (!parseRangeNumber(last, n)) return RangeResult::kIgnore;
    if (n == 0 || size == 0) return RangeResult::kUnsatisfiable;
    out.length = std::min(n, size);
    out.offset = size - out.length;
    return RangeResult::kPartial;
  }
  uint64_t a, b = UINT64_MAX;
  if (!parseRangeNumber(first, a)) return RangeResult::kIgnore;
  if (!last.empty() && (!parseRangeNumber(last, b) || b < a)) return RangeResult::kIgnore;
  if (a >= size) return RangeResult::kUnsatisfiable;
  if (b >= size) b = size - 1;
  out.offset = a;
  out.length = b - a + 1;
  return RangeResult::kPartial;
}

}  // namespace

// "bytes=" and a list of specs (RFC 9110 14.1.2). A field with a spec that
// does not parse, another unit or too many specs is ignored (full 200); the
// specs past the end of the file are dropped, and with none left the answer
// is a 416. Ranges that overlap or touch are merged (in file order, as 14.2
// allows; otherwise they keep the order asked for), so the parts never add
// up to more than the file.
RangeResult parseRanges(std::string_view v, uint64_t size, std::vector<ByteRange>& out) {
  out.clear();
  v = parser::trimSpaces(v);
  if (v.size() < 6 || !parser::equalsIgnoreCase(v.substr(0, 6), "bytes=")) return RangeResult::kIgnore;
  v.remove_prefix(6);
  size_t specs = 0;
  while (true) {
    size_t comma = v.find(',');
    std::string_view spec = parser::trimSpaces(v.substr(0, comma));
    if (!spec.empty()) {  // empty list elements are allowed (RFC 9110 5.6.1)
      if (++specs > kMaxRanges) return RangeResult::kIgnore;
      ByteRange r;
      switch (parseRangeSpec(spec, size, r)) {
        case RangeResult::kIgnore: return RangeResult::kIgnore;
        case RangeResult::kUnsatisfiable: break;
        case RangeResult::kPartial: out.push_back(r); break;
      }
    }
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  if (specs == 0) return RangeResult::kIgnore;
  if (out.empty()) return RangeResult::kUnsatisfiable;
  if (out.size() > 1) {
    std::vector<ByteRange> sorted = out;
    std::sort(sorted.begin(), sorted.end(),
              [](const ByteRange& x, const ByteRange& y) { return x.offset < y.offset; });
    bool merge = false;
    for (size_t i = 1; i < sorted.size() && !merge; ++i) {
      merge = sorted[i].offset <= sorted[i - 1].offset + sorted[i - 1].length;
    }
    if (merge) {
      out.clear();
      for (const ByteRange& r : sorted) {
        if (!out.empty() && r.offset <= out.back().offset + out.back().length) {
          uint64_t end = std::max(out.back().offset + out.back().length, r.offset + r.length);
          out.back().length = end - out.back().offset;
        } else {
          out.push_back(r);
        }
      }
    }
  }
  return RangeResult::kPartial;
}

void appendContentRange(std::string& h, const ByteRange& r, uint64_t size) {
  h.append("bytes ");
  h += std::to_string(r.offset);
  h.push_back('-');
  h += std::to_string(r.offset + r.length - 1);
  h.push_back('/');
  h += std::to_string(size);
}

}  // namespace kuai::server
