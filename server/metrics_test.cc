#include "server/metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace kuai::server {
namespace {

TEST(FormatCombined, WritesTheCombinedLogFormat) {
  std::string out;
  // 2026-11-30 12:34:56 UTC
  formatCombined(out, "127.0.0.1", 1796042096, "GET /a?b=1 HTTP/1.1", 200, 1234,
                 "http://x/", "curl/8");
  EXPECT_EQ(out,
            "127.0.0.1 - - [30/Nov/2026:12:34:56 +0000] \"GET /a?b=1 HTTP/1.1\" 200 1234 "
            "\"http://x/\" \"curl/8\"\n");
}

TEST(FormatCombined, MissingFieldsAreDashesAndQuotesAreEscaped) {
  std::string out;
  formatCombined(out, "", 0, "", 400, 0, "", "a\"b\\c\x01");
  EXPECT_EQ(out, "- - - [01/Jan/1970:00:00:00 +0000] \"-\" 400 0 \"-\" \"a\\x22b\\x5Cc\\x01\"\n");
}

TEST(Metrics, SumsEveryReactorsCounters) {
  auto a = registerReactorStats();
  auto b = registerReactorStats();
  a->record(200, 300, ReactorStats::kHttp1);         // first bucket (<= 0.5 ms)
  b->record(200, 3'000, ReactorStats::kHttp2);       // <= 5 ms
  b->record(503, 20'000'000, ReactorStats::kHttp1);  // past the last bound
  a->openConnections.store(2);
  b->openConnections.store(3);
  std::string text = renderMetrics();
  EXPECT_NE(text.find("kuai_requests_total{code=\"200\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kuai_requests_total{code=\"503\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kuai_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("kuai_request_duration_seconds_bucket{le=\"0.005\"} 2\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("kuai_request_duration_seconds_bucket{le=\"10\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("kuai_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("kuai_request_duration_seconds_count 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kuai_open_connections 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kuai_protocol_requests_total{protocol=\"http/1.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kuai_protocol_requests_total{protocol=\"h2\"} 1\n"), std::string::npos) << text;
  b.reset();  // a reactor that is gone no longer counts
  text = renderMetrics();
  EXPECT_NE(text.find("kuai_requests_total{code=\"200\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("code=\"503\""), std::string::npos) << text;
}

}  // namespace
}  // namespace kuai::server
