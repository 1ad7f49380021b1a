// Conditional requests and byte ranges for the static files (RFC 9110 13.1
// and 14): If-None-Match lists, the Range field, Content-Range.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kuai::server {

// One range of a file's bytes (from a Range field).
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

enum class RangeResult { kIgnore, kPartial, kUnsatisfiable };

// If-None-Match: "*" or a list of entity tags, compared weakly (W/ ignored).
bool etagListMatches(std::string_view list, std::string_view etag);

// "bytes=" and a list of specs (RFC 9110 14.1.2) against a file of `size`
// bytes: kPartial with the ranges in `out` (merged where they overlap or
// touch), kUnsatisfiable (416), or kIgnore (a full 200).
RangeResult parseRanges(std::string_view v, uint64_t size, std::vector<ByteRange>& out);

// "bytes first-last/size".
void appendContentRange(std::string& h, const ByteRange& r, uint64_t size);

}  // namespace kuai::server
