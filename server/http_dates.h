// HTTP dates (RFC 9110 5.6.7): written as IMF-fixdate, read in all three
// forms (Last-Modified, If-Modified-Since, If-Range).
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace kuai::server {

// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes).
void appendHttpDate(std::string& out, time_t t);
// IMF-fixdate, RFC 850 or asctime; false when `s` is none of them.
bool parseHttpDate(std::string_view s, time_t& out);

}  // namespace kuai::server
