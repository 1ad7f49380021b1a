// Reason phrases and preformatted status lines ("HTTP/1.1 200 OK\r\n").
#pragma once

#include <string_view>

namespace kuai::server {

std::string_view statusReason(int status);
// "HTTP/1.1 <code> <reason>\r\n"; built once per code.
std::string_view statusLine(int status);

}  // namespace kuai::server
