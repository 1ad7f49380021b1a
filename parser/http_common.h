// Types shared by kuai's HTTP/1.x parsers (RequestParser, ResponseParser): the
// size limits, a header field as two views, the error a parser stops with, and
// ASCII case-insensitive comparison.
#pragma once

#include <cstdint>
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

// The first field with this name (ASCII case-insensitive), or null.
inline const Header* findHeader(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (equalsIgnoreCase(h.name, name)) return &h;
  }
  return nullptr;
}

}  // namespace kuai::parser
