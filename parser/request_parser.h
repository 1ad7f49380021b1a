// RequestParser: an HTTP/1.x request parser over llhttp with kuai's limits and
// anti-smuggling rules. One per connection, owned by the connection, used only on
// that connection's reactor thread.
//
// Header names and values are views. While a request arrives in one buffer they
// point straight into that buffer (the reactor's receive buffer); when a request's
// head spans several feeds, its bytes are copied into the parser's own buffer and
// the views rebased there. Body bytes are never stored: they go to
// Handler::onBody as they arrive.
//
// ResponseParser (response_parser.h) is the proxy's counterpart for upstream
// responses; both share Limits, the fields and their lookup, Error and the
// head buffer (http_common.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llhttp.h"
#include "parser/http_common.h"

namespace kuai::parser {

// One parsed request head. Valid from Handler::onHeaders until the handler returns
// from onRequest (or, when the handler pauses the parser, until resume()).
struct Request : HeaderFields {
  std::string_view method;
  std::string_view target;
  uint8_t versionMajor = 1;
  uint8_t versionMinor = 1;
  bool keepAlive = true;        // after HTTP/1.0 / 1.1 and Connection rules
  bool expectContinue = false;  // Expect: 100-continue
  bool chunked = false;
  bool isHead = false;
  bool upgrade = false;
  int64_t contentLength = -1;   // -1 when absent
  // Nothing follows the head: no body, no tunnel (HTTP/1.1: neither a
  // positive Content-Length nor chunked, not an upgrade or CONNECT; HTTP/2:
  // END_STREAM on the HEADERS frame). onRequest is then the request's end.
  bool bodyless = false;
  // A body follows with no length announced: HTTP/2 DATA frames without a
  // content-length field, ending with the stream. (HTTP/1.1 has no such
  // request: without Content-Length or chunked it is bodyless.)
  bool unsizedBody() const {
    return !bodyless && !chunked && contentLength < 0 && !upgrade && method != "CONNECT";
  }
  std::string_view host;
  // HTTP/2: :scheme and :authority (empty when absent), whether the last
  // field is a host made from :authority (the client sent no host field),
  // and the stream's id (0 for HTTP/1.x).
  std::string_view scheme;
  std::string_view authority;
  bool hostFromAuthority = false;
  int32_t streamId = 0;
  // HTTP/2: the order the pseudo-header fields came in, two bits each
  // (0 :method, 1 :path, 2 :scheme, 3 :authority; the first in the lowest
  // bits), pseudoCount of them; 0 for HTTP/1.x.
  uint8_t pseudoOrder = 0;
  uint8_t pseudoCount = 0;
};

class RequestParser {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // The head is complete and passed every check. Body bytes may follow.
    virtual void onHeaders(const Request& req) {}
    // Decoded body bytes (chunked framing removed).
    virtual void onBody(const Request& req, std::string_view chunk) {}
    // The whole request has arrived. Return false to pause the parser (an
    // asynchronous response): feed() then only buffers, until resume().
    virtual bool onRequest(const Request& req) = 0;
  };

  enum class Result { kOk, kPaused, kError };
  enum class Phase { kIdle, kHead, kBody };

  RequestParser(Handler& handler, const Limits& limits);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses `len` bytes. Callbacks run synchronously. kError: error() says why; the
  // connection must answer and close, and feed nothing more.
  Result feed(const char* data, size_t len);
  // Continues after a pause with whatever feed() buffered meanwhile.
  Result resume();

  const Error& error() const { return error_; }
  Phase phase() const { return phase_; }
  bool paused() const { return paused_; }
  // Bytes held while paused (pipelined requests not yet parsed).
  size_t buffered() const { return tail_.size() - tailPos_; }
  // Hands over the bytes held while paused (after a protocol switch they are
  // the new protocol's, not HTTP).
  std::string takeBuffered() {
    std::string rest = tail_.substr(tailPos_);
    tail_.clear();
    tailPos_ = 0;
    return rest;
  }
  const Request& request() const { return req_; }
  // The trailer fields of the current request's chunked body, as
  // "Name: value\r\n" lines (owned: valid until the next request begins).
  const std::string& trailers() const { return trailers_; }
  uint64_t bodyBytes() const { return bodyBytes_; }
  // False: an HTTP/1.1 request without Host is taken (a script's server
  // with requireHostHeader: false); more than one is still refused.
  void setRequireHost(bool on) { requireHost_ = on; }

 private:
  static int onMessageBegin(llhttp_t* p);
  static int onMethod(llhttp_t* p, const char* at, size_t len);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onVersion(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBodyData(llhttp_t* p, const char* at, size_t len);
  static int onMessageComplete(llhttp_t* p);

  Result execute(const char* data, size_t len);
  int fail(int status, const char* reason);
  bool appendSpan(std::string_view& view, const char* at, size_t len);
  int checkHead();
  int checkHeadEnd();
  bool headTooLong(const char* end) const;
  int onTrailerSpan(const char* at, size_t len, bool value);
  void keepHeadBytes(const char* bufBegin, const char* bufEnd);
  void rebase(const char* from, const char* to, size_t len);

  static const llhttp_settings_t& settings();
  llhttp_t parser_;
  Handler& handler_;
  Limits limits_;
  Request req_;
  Error error_;
  Phase phase_ = Phase::kIdle;
  bool paused_ = false;
  bool inValue_ = false;     // last span was a header value
  uint32_t lineBytes_ = 0;   // request-line bytes so far
  uint32_t headBytes_ = 0;   // header-block bytes so far
  uint32_t hostCount_ = 0;
  bool requireHost_ = true;
  uint32_t lengthCount_ = 0;
  uint32_t encodingCount_ = 0;
  uint64_t bodyBytes_ = 0;
  const char* headBegin_ = nullptr;  // first byte of this request's head
  const char* headEnd_ = nullptr;    // one past the last head byte seen
  const char* bufEnd_ = nullptr;     // end of the buffer llhttp is parsing
  HeadBuffer head_;                  // head bytes when a head spans feeds
  std::string trailers_;             // trailer fields ("Name: value\r\n")
  bool trailerInValue_ = false;      // the last trailer span was a value
  std::string tail_;                 // bytes buffered while paused
  size_t tailPos_ = 0;
  bool inTail_ = false;              // execute() is running over tail_
};

}  // namespace kuai::parser
