// Header lines as handlers give them to Exchange::writeHead ("Name: value\r\n"
// each): walking them and reading one field's value. Shared by what rewrites
// a head before the protocol writes it (compression, route header rules, the
// static encodings).
#pragma once

#include <string_view>

#include "parser/http_common.h"

namespace kuai::server {

// Calls fn(name, value, line) for each line: name without the colon, value
// with its leading and trailing blanks trimmed, line the whole line with its
// CRLF (a last line without one comes without). Lines without a colon get an
// empty name.
template <typename Fn>
void forEachHeaderLine(std::string_view lines, Fn&& fn) {
  size_t at = 0;
  while (at < lines.size()) {
    size_t eol = lines.find("\r\n", at);
    size_t next = eol == std::string_view::npos ? lines.size() : eol + 2;
    std::string_view line = lines.substr(at, next - at);
    std::string_view content = lines.substr(at, (eol == std::string_view::npos ? lines.size() : eol) - at);
    at = next;
    size_t colon = content.find(':');
    std::string_view name = colon == std::string_view::npos ? std::string_view() : content.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view() : content.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    fn(name, value, line);
  }
}

// The first `name` field's value (ASCII case-insensitive); false when absent.
inline bool headerLineValue(std::string_view lines, std::string_view name, std::string_view& value) {
  bool found = false;
  forEachHeaderLine(lines, [&](std::string_view n, std::string_view v, std::string_view) {
    if (!found && parser::equalsIgnoreCase(n, name)) {
      value = v;
      found = true;
    }
  });
  return found;
}

}  // namespace kuai::server
