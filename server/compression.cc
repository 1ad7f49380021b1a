#include "server/compression.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "parser/http_common.h"

namespace kuai::server {

std::string_view encodingName(Encoding e) {
  switch (e) {
    case Encoding::kBrotli: return "br";
    case Encoding::kZstd: return "zstd";
    case Encoding::kGzip: return "gzip";
    case Encoding::kIdentity: break;
  }
  return "";
}

std::string_view encodingSuffix(Encoding e) {
  switch (e) {
    case Encoding::kBrotli: return ".br";
    case Encoding::kZstd: return ".zst";
    case Encoding::kGzip: return ".gz";
    case Encoding::kIdentity: break;
  }
  return "";
}

namespace {

// A q-value ("1", "0.5", "0.000") in thousandths; -1 when malformed.
int qValue(std::string_view v) {
  v = parser::trimSpaces(v);
  if (v.empty() || v.size() > 5) return -1;
  if (v[0] == '1') {
    for (char c : v.substr(1)) {
      if (c != '.' && c != '0') return -1;
    }
    return 1000;
  }
  if (v[0] != '0') return -1;
  if (v.size() == 1) return 0;
  if (v[1] != '.') return -1;
  int q = 0, digits = 0;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return -1;
    q = q * 10 + (c - '0');
    ++digits;
  }
  while (digits++ < 3) q *= 10;
  return q;
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && parser::equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool endsWithIgnoreCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && parser::equalsIgnoreCase(s.substr(s.size() - suffix.size()), suffix);
}

}  // namespace

bool CompressionSpec::compressible(std::string_view contentType) const {
  std::string_view type = parser::trimSpaces(contentType.substr(0, contentType.find(';')));
  if (type.empty()) return false;
  for (const std::string& pattern : types) {
    std::string_view p = pattern;
    size_t star = p.find('*');
    if (star == std::string_view::npos) {
      if (parser::equalsIgnoreCase(type, p)) return true;
    } else if (startsWithIgnoreCase(type, p.substr(0, star)) && endsWithIgnoreCase(type, p.substr(star + 1)) &&
               type.size() > p.size() - 1) {
      return true;
    }
  }
  return false;
}

int CompressionSpec::level(Encoding e) const {
  switch (e) {
    case Encoding::kBrotli: return brotliLevel;
    case Encoding::kZstd: return zstdLevel;
    case Encoding::kGzip: return gzipLevel;
    case Encoding::kIdentity: break;
  }
  return 0;
}

Encoding negotiate(std::string_view header, uint8_t available) {
  if (parser::trimSpaces(header).empty()) return Encoding::kIdentity;
  constexpr Encoding kOrder[] = {Encoding::kBrotli, Encoding::kZstd, Encoding::kGzip};
  int q[4] = {-1, -1, -1, -1};  // per encoding; -1: not named
  int star = -1;
  size_t at = 0;
  while (at <= header.size()) {
    size_t comma = header.find(',', at);
    if (comma == std::string_view::npos) comma = header.size();
    std::string_view item = header.substr(at, comma - at);
    at = comma + 1;
    size_t semi = item.find(';');
    std::string_view name = parser::trimSpaces(item.substr(0, semi));
    int value = 1000;
    if (semi != std::string_view::npos) {
      std::string_view param = parser::trimSpaces(item.substr(semi + 1));
      if (param.size() < 2 || (param[0] != 'q' && param[0] != 'Q') || param[1] != '=') continue;
      value = qValue(param.substr(2));
      if (value < 0) continue;
    }
    if (name == "*") {
      star = value;
      continue;
    }
    for (Encoding e : {Encoding::kBrotli, Encoding::kZstd, Encoding::kGzip, Encoding::kIdentity}) {
      std::string_view n = e == Encoding::kIdentity ? "identity" : encodingName(e);
      if (parser::equalsIgnoreCase(name, n) || (e == Encoding::kGzip && parser::equalsIgnoreCase(name, "x-gzip"))) {
        q[unsigned(e)] = std::max(q[unsigned(e)], value);
      }
    }
  }
  Encoding best = Encoding::kIdentity;
  int bestQ = 0;
  for (Encoding e : kOrder) {
    if (!(available & bit(e))) continue;
    int v = q[unsigned(e)] >= 0 ? q[unsigned(e)] : (star >= 0 ? star : 0);
    if (v > bestQ) {
      best = e;
      bestQ = v;
    }
  }
  if (best == Encoding::kIdentity) return Encoding::kIdentity;
  // Identity wins only when the client names it with a higher q-value (it
  // is acceptable anyway, but not preferred, when left unnamed).
  if (q[0] > bestQ) return Encoding::kIdentity;
  return best;
}

namespace {

class GzipCompressor final : public Compressor {
 public:
  explicit GzipCompressor(int level) {
    std::memset(&z_, 0, sizeof(z_));
    ok_ = deflateInit2(&z_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~GzipCompressor() override {
    if (ok_) deflateEnd(&z_);
  }
  bool write(std::string_view in, std::string& out, bool flush, bool finish) override {
    if (!ok_) return false;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = uInt(in.size());
    int mode = finish ? Z_FINISH : flush ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    for (;;) {
      size_t at = out.size();
      size_t room = std::max<size_t>(in.size() / 2 + 64, 16 * 1024);
      out.resize(at + room);
      z_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      z_.avail_out = uInt(room);
      int rc = deflate(&z_, mode);
      out.resize(at + room - z_.avail_out);
      if (rc == Z_STREAM_ERROR) return false;
      if (finish ? rc == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) return true;
      if (rc == Z_BUF_ERROR && z_.avail_in == 0 && !finish) return true;
    }
  }

 private:
  z_stream z_;
  bool ok_ = false;
};

class BrotliCompressor final : public Compressor {
 public:
  explicit BrotliCompressor(int level) : s_(BrotliEncoderCreateInstance(nullptr, nullptr, nullptr)) {
    if (s_) {
      BrotliEncoderSetParameter(s_, BROTLI_PARAM_QUALITY, uint32_t(level));
      BrotliEncoderSetParameter(s_, BROTLI_PARAM_LGWIN, 22);
    }
  }
  ~BrotliCompressor() override {
    if (s_) BrotliEncoderDestroyInstance(s_);
  }
  bool write(std::string_view in, std::string& out, bool flush, bool finish) override {
    if (!s_) return false;
    const uint8_t* next = reinterpret_cast<const uint8_t*>(in.data());
    size_t avail = in.size();
    BrotliEncoderOperation op =
        finish ? BROTLI_OPERATION_FINISH : flush ? BROTLI_OPERATION_FLUSH : BROTLI_OPERATION_PROCESS;
    for (;;) {
      size_t outAvail = 0;
      if (!BrotliEncoderCompressStream(s_, op, &avail, &next, &outAvail, nullptr, nullptr)) return false;
      size_t size = 0;
      while (BrotliEncoderHasMoreOutput(s_)) {
        const uint8_t* chunk = BrotliEncoderTakeOutput(s_, &size);
        out.append(reinterpret_cast<const char*>(chunk), size);
      }
      if (avail == 0 && (finish ? BrotliEncoderIsFinished(s_) : true)) return true;
    }
  }

 private:
  BrotliEncoderState* s_;
};

class ZstdCompressor final : public Compressor {
 public:
  explicit ZstdCompressor(int level) : c_(ZSTD_createCCtx()) {
    if (c_) ZSTD_CCtx_setParameter(c_, ZSTD_c_compressionLevel, level);
  }
  ~ZstdCompressor() override { ZSTD_freeCCtx(c_); }
  bool write(std::string_view in, std::string& out, bool flush, bool finish) override {
    if (!c_) return false;
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    ZSTD_EndDirective mode = finish ? ZSTD_e_end : flush ? ZSTD_e_flush : ZSTD_e_continue;
    for (;;) {
      size_t at = out.size();
      size_t room = std::max<size_t>(ZSTD_CStreamOutSize(), in.size() / 2 + 64);
      out.resize(at + room);
      ZSTD_outBuffer output{out.data() + at, room, 0};
      size_t left = ZSTD_compressStream2(c_, &output, &input, mode);
      out.resize(at + output.pos);
      if (ZSTD_isError(left)) return false;
      if (mode == ZSTD_e_continue ? input.pos == input.size : left == 0) return true;
    }
  }

 private:
  ZSTD_CCtx* c_;
};

}  // namespace

std::unique_ptr<Compressor> Compressor::make(Encoding e, int level) {
  switch (e) {
    case Encoding::kBrotli: return std::make_unique<BrotliCompressor>(level);
    case Encoding::kZstd: return std::make_unique<ZstdCompressor>(level);
    case Encoding::kGzip: return std::make_unique<GzipCompressor>(level);
    case Encoding::kIdentity: break;
  }
  return nullptr;
}

bool compressAll(Encoding e, int level, std::string_view in, std::string& out) {
  out.clear();
  std::unique_ptr<Compressor> c = Compressor::make(e, level);
  return c && c->write(in, out, false, true);
}

}  // namespace kuai::server
