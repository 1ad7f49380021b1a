// What kuai's HTTP/1.x parsers (RequestParser, ResponseParser) share: the size
// limits, a header field as two views and the lookup of fields by name, the
// error a parser stops with, ASCII case-insensitive comparison, and the buffer
// a head is kept in when it outlives the bytes it arrived in (with the moving
// of its views).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kuai::parser {

// Defaults are at least as strict as nginx's. For a response the start line is
// the status line (maxRequestLine), and maxBodyBytes does not apply: response
// bodies stream through the proxy.
struct Limits {
  uint32_t maxRequestLine = 8 * 1024;   // method SP target SP version -> 414
  uint32_t maxFieldSize = 8 * 1024;     // one header field, name + value -> 431
  uint32_t maxHeaderBytes = 32 * 1024;  // the whole header block -> 431
  uint32_t maxHeaders = 100;            // number of fields -> 431
  uint64_t maxBodyBytes = 1024 * 1024;  // decoded body -> 413
};

struct Header {
  std::string_view name;
  std::string_view value;
};

// Why a message was refused: the HTTP status to answer with and a short reason.
struct Error {
  int status = 0;
  const char* reason = "";
};

// Case-insensitive ASCII comparison for header names and tokens.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// A field value or list item without the spaces and tabs around it (OWS).
inline std::string_view trimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The first field with this name (ASCII case-insensitive), or null.
inline const Header* findHeader(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (equalsIgnoreCase(h.name, name)) return &h;
  }
  return nullptr;
}

// A parsed head's fields, in order, and their lookup by name.
struct HeaderFields {
  std::vector<Header> headers;

  // First field with this name (ASCII case-insensitive); empty when absent.
  std::string_view header(std::string_view name) const {
    const Header* h = findHeader(headers, name);
    return h ? h->value : std::string_view();
  }
  bool hasHeader(std::string_view name) const { return findHeader(headers, name) != nullptr; }
};

// The bytes of a head kept by its parser: a head that spans feeds is
// assembled here, and a head whose views must outlive the feed's buffer is
// copied here. A parser's views point either into the caller's buffer or into
// this one; moveView/moveFields carry them over when the bytes move.
class HeadBuffer {
 public:
  const char* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  // Whether `p` points at a held byte.
  bool holds(const char* p) const { return p >= bytes_.data() && p < bytes_.data() + bytes_.size(); }
  void clear() { bytes_.clear(); }
  // The held bytes become a copy of [from, from + len), which may lie inside
  // them. Returns where the copy begins.
  const char* assign(const char* from, size_t len) {
    std::string kept(from, len);
    bytes_.swap(kept);
    return bytes_.data();
  }
  // Appends bytes. Returns where the held bytes were before, when appending
  // moved them (their views must move too), else null.
  const char* append(const char* p, size_t len) {
    const char* before = bytes_.data();
    bytes_.append(p, len);
    return bytes_.data() != before && !bytes_.empty() ? before : nullptr;
  }

 private:
  std::string bytes_;
};

// A view into [from, from + len) now points at the same bytes copied to `to`;
// views elsewhere (and null ones) stay.
inline void moveView(std::string_view& v, const char* from, size_t len, const char* to) {
  if (v.data() && v.data() >= from && v.data() < from + len) v = std::string_view(to + (v.data() - from), v.size());
}
inline void moveFields(std::vector<Header>& fields, const char* from, size_t len, const char* to) {
  for (Header& h : fields) {
    moveView(h.name, from, len, to);
    moveView(h.value, from, len, to);
  }
}

}  // namespace kuai::parser
