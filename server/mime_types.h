// The Content-Type of a static file, by the extension of its name.
#pragma once

#include <string_view>

namespace kuai::server {

// The type of the last path segment's extension, ASCII case ignored ("x.PNG"
// is image/png); application/octet-stream for an unknown one or none (a
// leading dot, as in ".bashrc", is not an extension). Static storage.
std::string_view mimeTypeFor(std::string_view path);

}  // namespace kuai::server
