// Content-Encoding: choosing an encoding from Accept-Encoding (RFC 9110
// §12.5.3, q-values), deciding what is worth compressing, and streaming
// brotli, zstd and gzip compressors (libbrotli, libzstd, zlib).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kuai::server {

enum class Encoding : uint8_t { kIdentity = 0, kBrotli = 1, kZstd = 2, kGzip = 3 };

// Bit sets of encodings.
constexpr uint8_t bit(Encoding e) { return uint8_t(1u << unsigned(e)); }
constexpr uint8_t kAllEncodings = bit(Encoding::kBrotli) | bit(Encoding::kZstd) | bit(Encoding::kGzip);

// "br", "zstd", "gzip" ("" for identity).
std::string_view encodingName(Encoding e);
// The file name suffix of a precompressed sibling: ".br", ".zst", ".gz".
std::string_view encodingSuffix(Encoding e);

// The site's compression settings (the config's `compression`).
struct CompressionSpec {
  bool enabled = true;
  // Media types worth compressing: "text/*", "application/json",
  // "application/*+json" (a suffix), compared without parameters.
  std::vector<std::string> types = {"text/*",          "application/json", "application/javascript",
                                    "application/xml", "application/wasm", "application/*+json",
                                    "application/*+xml", "image/svg+xml",  "image/x-icon",
                                    "font/ttf",        "font/otf"};
  uint64_t minSize = 256;  // smaller bodies (when their length is known) go as they are
  int brotliLevel = 5;     // 0-11
  int zstdLevel = 3;       // 1-19
  int gzipLevel = 6;       // 1-9
  uint8_t encodings = kAllEncodings;  // the ones offered
  // Static files: serve file.br / file.zst / file.gz beside a file when there.
  bool precompressed = true;
  // Static files compressed on the fly are kept per reactor, up to this many
  // bytes (least recently used go first); files above maxFileSize are sent
  // as they are unless a precompressed sibling exists.
  uint64_t cacheBytes = 32ull << 20;
  uint64_t maxFileSize = 8ull << 20;

  bool compressible(std::string_view contentType) const;
  int level(Encoding e) const;
};

// The encoding to answer with, of those in `available` (identity is always
// available unless the client refuses it): the highest q-value, ties going
// to br, then zstd, then gzip. Returns kIdentity when no Accept-Encoding was
// sent, or when nothing acceptable is available.
Encoding negotiate(std::string_view acceptEncoding, uint8_t available);

// A streaming compressor for one response body.
class Compressor {
 public:
  static std::unique_ptr<Compressor> make(Encoding e, int level);
  virtual ~Compressor() = default;
  // Compresses `in` and appends what is ready to `out`; flush: everything
  // so far can be decoded by the client (streamed responses); finish: the
  // end of the stream.
  virtual bool write(std::string_view in, std::string& out, bool flush, bool finish) = 0;
};

// The whole of `in`, compressed (a static file's cached form).
bool compressAll(Encoding e, int level, std::string_view in, std::string& out);

}  // namespace kuai::server
