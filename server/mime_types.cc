// The Content-Type of a static file, by the extension of its name.
#include "server/mime_types.h"

#include "parser/http_common.h"

namespace kuai::server {

namespace {

constexpr std::string_view kOctetStream = "application/octet-stream";

// One row of the extension table: lower-case extension, full Content-Type.
struct MimeRow {
  std::string_view ext;
  std::string_view type;
};

constexpr MimeRow kMimeTypes[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"cjs", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"webmanifest", "application/manifest+json; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "text/xml; charset=utf-8"},
    {"yaml", "text/yaml; charset=utf-8"},
    {"yml", "text/yaml; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"eot", "application/vnd.ms-fontobject"},
    // Web documents and feeds.
    {"xhtml", "application/xhtml+xml; charset=utf-8"},
    {"rss", "application/rss+xml; charset=utf-8"},
    {"atom", "application/atom+xml; charset=utf-8"},
    {"jsonld", "application/ld+json; charset=utf-8"},
    {"toml", "application/toml; charset=utf-8"},
    {"tsv", "text/tab-separated-values; charset=utf-8"},
    {"ics", "text/calendar; charset=utf-8"},
    {"vtt", "text/vtt; charset=utf-8"},  // <track> subtitles need this type
    // Images.
    {"apng", "image/apng"},
    {"jxl", "image/jxl"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"heic", "image/heic"},
    // Audio and video, streaming manifests.
    {"m4a", "audio/mp4"},
    {"aac", "audio/aac"},
    {"flac", "audio/flac"},
    {"opus", "audio/ogg"},
    {"oga", "audio/ogg"},
    {"mid", "audio/midi"},
    {"midi", "audio/midi"},
    {"m4v", "video/mp4"},
    {"mov", "video/quicktime"},
    {"ogv", "video/ogg"},
    {"mkv", "video/x-matroska"},
    {"m3u8", "application/vnd.apple.mpegurl"},
    {"mpd", "application/dash+xml"},
    // Archives and documents.
    {"7z", "application/x-7z-compressed"},
    {"bz2", "application/x-bzip2"},
    {"xz", "application/x-xz"},
    {"zst", "application/zstd"},
    {"rar", "application/vnd.rar"},
    {"jar", "application/java-archive"},
    {"epub", "application/epub+zip"},
    {"rtf", "application/rtf"},
    {"doc", "application/msword"},
    {"xls", "application/vnd.ms-excel"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
};

}  // namespace

std::string_view mimeTypeFor(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return kOctetStream;
  std::string_view ext = name.substr(dot + 1);
  for (const MimeRow& row : kMimeTypes) {
    if (parser::equalsIgnoreCase(ext, row.ext)) return row.type;
  }
  return kOctetStream;
}

}  // namespace kuai::server
