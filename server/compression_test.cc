#include "server/compression.h"

#include <brotli/decode.h>
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <random>
#include <string>

namespace kuai::server {
namespace {

std::string decode(Encoding e, const std::string& in) {
  std::string out;
  if (e == Encoding::kGzip) {
    z_stream z{};
    EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = uInt(in.size());
    char buf[65536];
    int rc;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof(buf);
      rc = inflate(&z, Z_NO_FLUSH);
      out.append(buf, sizeof(buf) - z.avail_out);
    } while (rc == Z_OK);
    EXPECT_EQ(rc, Z_STREAM_END);
    inflateEnd(&z);
  } else if (e == Encoding::kBrotli) {
    BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    const uint8_t* next = reinterpret_cast<const uint8_t*>(in.data());
    size_t avail = in.size();
    BrotliDecoderResult r;
    do {
      size_t outAvail = 0;
      r = BrotliDecoderDecompressStream(s, &avail, &next, &outAvail, nullptr, nullptr);
      size_t n = 0;
      const uint8_t* chunk = BrotliDecoderTakeOutput(s, &n);
      out.append(reinterpret_cast<const char*>(chunk), n);
    } while (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
    EXPECT_EQ(r, BROTLI_DECODER_RESULT_SUCCESS);
    BrotliDecoderDestroyInstance(s);
  } else {
    ZSTD_DCtx* d = ZSTD_createDCtx();
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    char buf[65536];
    size_t rc = 1;
    while (input.pos < input.size) {
      ZSTD_outBuffer output{buf, sizeof(buf), 0};
      rc = ZSTD_decompressStream(d, &output, &input);
      EXPECT_FALSE(ZSTD_isError(rc));
      if (ZSTD_isError(rc)) break;
      out.append(buf, output.pos);
    }
    EXPECT_EQ(rc, 0u);  // a whole frame
    ZSTD_freeDCtx(d);
  }
  return out;
}

std::string sample(size_t n) {
  std::mt19937 rng(7);
  std::string words[] = {"kuai ", "fast ", "server ", "<div class=\"x\">", "\n", "function(){}", "0123 "};
  std::string s;
  while (s.size() < n) s += words[rng() % 7];
  s.resize(n);
  return s;
}

class EachEncoding : public ::testing::TestWithParam<Encoding> {};

TEST_P(EachEncoding, WholeBodyRoundTrips) {
  for (size_t n : {size_t(0), size_t(1), size_t(1000), size_t(300000)}) {
    std::string in = sample(n), out;
    ASSERT_TRUE(compressAll(GetParam(), 5, in, out));
    if (n >= 1000) {
      EXPECT_LT(out.size(), in.size() / 2) << n;
    }
    EXPECT_EQ(decode(GetParam(), out), in) << n;
  }
}

TEST_P(EachEncoding, StreamedWithFlushesDecodesAtEveryFlush) {
  std::unique_ptr<Compressor> c = Compressor::make(GetParam(), 3);
  ASSERT_TRUE(c);
  std::string in = sample(200000), out, sent;
  size_t at = 0;
  for (size_t step : {1, 10, 100, 5000, 70000}) {
    std::string_view part = std::string_view(in).substr(at, step);
    at += part.size();
    ASSERT_TRUE(c->write(part, out, /*flush=*/true, false));
    EXPECT_FALSE(out.empty()) << "a flush gives the client bytes it can decode";
    sent += out;
    out.clear();
  }
  ASSERT_TRUE(c->write(std::string_view(in).substr(at), out, false, false));
  ASSERT_TRUE(c->write({}, out, false, true));
  sent += out;
  EXPECT_EQ(decode(GetParam(), sent), in);
}

INSTANTIATE_TEST_SUITE_P(All, EachEncoding, ::testing::Values(Encoding::kBrotli, Encoding::kZstd, Encoding::kGzip),
                         [](const auto& info) { return std::string(encodingName(info.param)); });

TEST(Negotiate, QValuesAndPreferences) {
  constexpr uint8_t all = kAllEncodings;
  EXPECT_EQ(negotiate("", all), Encoding::kIdentity);
  EXPECT_EQ(negotiate("gzip", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("gzip, deflate, br", all), Encoding::kBrotli);
  EXPECT_EQ(negotiate("gzip, deflate, br, zstd", all), Encoding::kBrotli);  // ties: br first
  EXPECT_EQ(negotiate("zstd, gzip", all), Encoding::kZstd);
  EXPECT_EQ(negotiate("br;q=0.5, gzip;q=0.8", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("br;q=0, gzip", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("br;q=0", all), Encoding::kIdentity);
  EXPECT_EQ(negotiate("*", all), Encoding::kBrotli);
  EXPECT_EQ(negotiate("*;q=0.5, gzip;q=0.9", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("identity", all), Encoding::kIdentity);
  EXPECT_EQ(negotiate("identity;q=1, gzip;q=0.5", all), Encoding::kIdentity);
  EXPECT_EQ(negotiate("identity;q=0, gzip;q=0.5", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("GZIP;Q=1.000", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("x-gzip", all), Encoding::kGzip);
  EXPECT_EQ(negotiate("br;q=2, gzip;q=bad, zstd;q=0.001", all), Encoding::kZstd);  // malformed items ignored
  EXPECT_EQ(negotiate(" , ,br ;q=0.9", all), Encoding::kBrotli);
  EXPECT_EQ(negotiate("br", bit(Encoding::kGzip)), Encoding::kIdentity);  // not available
  EXPECT_EQ(negotiate("br, gzip;q=0.1", bit(Encoding::kGzip)), Encoding::kGzip);
  EXPECT_EQ(negotiate("deflate, compress", all), Encoding::kIdentity);
}

TEST(CompressionSpec, Types) {
  CompressionSpec s;
  EXPECT_TRUE(s.compressible("text/html; charset=utf-8"));
  EXPECT_TRUE(s.compressible("Text/CSS"));
  EXPECT_TRUE(s.compressible("application/json"));
  EXPECT_TRUE(s.compressible("application/ld+json"));
  EXPECT_TRUE(s.compressible("image/svg+xml"));
  EXPECT_FALSE(s.compressible("image/png"));
  EXPECT_FALSE(s.compressible("application/octet-stream"));
  EXPECT_FALSE(s.compressible("application/+json"));
  EXPECT_FALSE(s.compressible(""));
  EXPECT_FALSE(s.compressible("text"));
}

}  // namespace
}  // namespace kuai::server
