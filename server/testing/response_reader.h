// ResponseReader: splits what a client received from kuai into responses, with
// kuai's own strict response parser (RFC 9112 grammar, framing checks), for the
// request-pipeline tests and fuzzer. Tell it, request by request, whether the
// request was HEAD (its response has no body); feed it the bytes in any
// pieces. Test code only.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parser/response_parser.h"

namespace kuai::server::testing {

struct ReadResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keepAlive = true;
  bool chunked = false;
  bool complete = false;  // its last byte arrived
  // The first field with this name (case-insensitive); "" when absent.
  std::string header(std::string_view name) const;
  bool has(std::string_view name) const;
};

class ResponseReader : private parser::ResponseParser::Handler {
 public:
  ResponseReader();
  // One more request was sent; `head`: it was a HEAD request.
  void expect(bool head = false);
  // Parses more of what was received. False once the bytes are not a valid
  // sequence of responses to the expected requests (error() says why).
  bool feed(std::string_view bytes);
  // The connection closed: completes a response delimited by the close.
  // False when a response was cut short.
  bool finish();
  const std::string& error() const { return error_; }
  // The responses parsed (interim 1xx ones included), the last one possibly
  // still incomplete.
  std::vector<ReadResponse>& responses() { return responses_; }
  // A 101 was read: the bytes after it are not HTTP (not parsed).
  bool upgraded() const { return upgraded_; }
  // Complete final (non-1xx) responses so far.
  size_t finals() const;

 private:
  void onHeaders(const parser::Response& resp) override;
  void onBody(std::string_view chunk) override;
  void onComplete(const parser::Response& resp) override;

  parser::ResponseParser parser_;
  std::deque<bool> expected_;
  std::vector<ReadResponse> responses_;
  std::string error_;
  bool upgraded_ = false;
};

// `bytes` without their Date lines (the clock's part of a response).
std::string withoutDate(std::string_view bytes);

}  // namespace kuai::server::testing
