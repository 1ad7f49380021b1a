// Character classes and small field-value parsers (RFC 9110 / 9112) shared by
// kuai's request and response parsers. Internal to //parser: header-only so
// that tools/fuzz can build a parser from its .cc files alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "parser/http_common.h"

namespace kuai::parser::detail {

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

// tchar: the characters of a token (field names, list items, methods).
inline bool isTchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// Field values (and a reason phrase) may hold HTAB, SP, VCHAR and obs-text;
// never NUL, CR, LF or other controls (RFC 9110 §5.5).
inline bool isFieldChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

inline bool validFieldValue(std::string_view v) {
  for (unsigned char c : v) {
    if (!isFieldChar(c)) return false;
  }
  return true;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Content-Length: 1*DIGIT, nothing else (no sign, no list, no spaces inside).
inline bool parseLength(std::string_view v, int64_t& out) {
  if (v.empty() || v.size() > 18) return false;
  int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  out = n;
  return true;
}

// Calls fn(item) for each non-empty, trimmed item of a comma-separated list;
// stops early when fn returns true, and returns whether it did.
template <typename Fn>
bool anyListItem(std::string_view v, Fn&& fn) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    if (!item.empty() && fn(item)) return true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

// Whether any field called `name` lists `token` (e.g. Connection: close).
// llhttp 8.1 misses "close" followed by whitespace ("Connection: close\t").
inline bool listsToken(const std::vector<Header>& headers, std::string_view name,
                       std::string_view token) {
  for (const Header& h : headers) {
    if (h.name.size() != name.size() || !equalsIgnoreCase(h.name, name)) continue;
    if (anyListItem(h.value, [&](std::string_view item) { return equalsIgnoreCase(item, token); })) {
      return true;
    }
  }
  return false;
}

// A Transfer-Encoding value kuai understands: exactly one coding, "chunked".
// Sets `onlyChunked` when every listed coding is chunked and `count` to how
// many are listed.
inline void transferCodings(std::string_view v, bool& onlyChunked, size_t& count) {
  onlyChunked = true;
  count = 0;
  anyListItem(v, [&](std::string_view item) {
    ++count;
    if (!equalsIgnoreCase(item, "chunked")) onlyChunked = false;
    return false;
  });
}

}  // namespace kuai::parser::detail
