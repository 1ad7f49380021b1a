// ResponseParser: an HTTP/1.x response parser for kuai's reverse proxy, over
// llhttp (strict mode, no lenient flags) with the same limits and
// anti-smuggling rules as RequestParser. One per upstream connection, used only
// on that connection's reactor thread.
//
// The proxy calls reset() before each request it sends, then feeds whatever the
// upstream sends. A parser expects exactly one final response per reset(),
// possibly after interim 1xx ones; any byte beyond it (in the same feed or a
// later one) is an unsolicited response: kError, and the connection is not
// reusable.
//
// Every head is checked byte by byte against RFC 9112's grammar on top of
// llhttp's own parse: status line "HTTP/1.x SP 3DIGIT [SP reason]" (status
// 100..599), field lines "token: value" with CRLF line ends only, no obs-fold,
// no bare CR or LF, no controls in values; one Content-Length at most, a
// Transfer-Encoding of exactly "chunked" and never with Content-Length. Trailer
// fields are checked the same way and reported with onComplete (never merged
// into the head). Every upstream parse error has status 502.
//
// Header names, values and the reason phrase are views. While a head arrives in
// one buffer they point straight into it; a head that spans feeds is copied
// into the parser's own buffer. They stay valid from Handler::onHeaders until
// Handler::onComplete for that response returns (a head whose body spans feeds
// is copied once when its feed ends). Body bytes are never stored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llhttp.h"
#include "parser/http_common.h"

namespace kuai::parser {

struct Response : HeaderFields {
  int status = 0;
  uint8_t versionMajor = 1;
  uint8_t versionMinor = 1;
  std::string_view reason;
  // The upstream connection may carry another request after this response:
  // HTTP/1.1 without Connection: close, HTTP/1.0 with Connection: keep-alive;
  // never for a close-delimited body or an upgrade.
  bool keepAlive = true;
  bool chunked = false;        // Transfer-Encoding: chunked (a body follows only if hasBody)
  int64_t contentLength = -1;  // the Content-Length field, -1 when absent
  bool upgrade = false;        // 101 Switching Protocols, or a 2xx to CONNECT
  bool hasBody = false;        // body bytes follow the head (framed by length, chunks or EOF)
  bool closeDelimited = false; // the body runs to EOF: no length, not chunked, a body allowed
  // The trailer section of a chunked body, its field lines as received
  // ("Name: value\r\n" each, checked like the head's): set for onComplete
  // only, empty otherwise.
  std::string_view trailers;

  // 1xx other than 101: another head follows for the same request.
  bool interim() const { return status >= 100 && status < 200 && status != 101; }
};

class ResponseParser {
 public:
  // Callbacks run inside feed() / finish(); they must not call reset().
  class Handler {
   public:
    virtual ~Handler() = default;
    // A head passed every check: each interim 1xx head, then the final one.
    virtual void onHeaders(const Response& resp) = 0;
    // Decoded body bytes (chunk framing removed).
    virtual void onBody(std::string_view chunk) = 0;
    // The message is done. For an interim 1xx, its head is done and the final
    // response follows; for an upgrade (kUpgrade), right after onHeaders.
    virtual void onComplete(const Response& resp) = 0;
  };

  enum class Result { kOk, kUpgrade, kError };
  enum class Phase {
    kIdle,      // no response expected: before the first reset(), or the final one is done
    kWaiting,   // reset() was called; no byte of the next head yet
    kHead,      // a head is arriving
    kBody,      // a body (and for chunked, its trailers) is arriving
    kUpgraded,  // a 101 (or 2xx to CONNECT) was parsed: what follows is not HTTP
    kError,
  };

  ResponseParser(Handler& handler, const Limits& limits);
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // Before each request's response. A HEAD request's response has no body
  // whatever its headers say; a 2xx to CONNECT is a tunnel (kUpgrade). Also
  // clears an earlier error.
  void reset(bool headRequest, bool connectRequest = false);

  // Parses `len` bytes; callbacks run synchronously. kUpgrade: the head of a
  // 101 (or 2xx to CONNECT) ended after upgradeOffset() of these bytes; the
  // rest is the new protocol's. kError: error() says why; feed nothing more.
  Result feed(const char* data, size_t len);
  // The upstream closed its side. Completes a close-delimited body (kOk);
  // kError when a response was expected and is missing or truncated (head,
  // body or chunks); kOk when none was expected.
  Result finish();

  const Error& error() const { return error_; }
  Phase phase() const { return phase_; }
  // Bytes of the last feed() that belong to the upgraded head (kUpgrade only).
  size_t upgradeOffset() const { return upgradeOffset_; }
  // Some bytes of the expected response have arrived (an interim 1xx counts)
  // and the final response is not complete.
  // Stays as it was when an error stops the parser: false after an error on
  // bytes past a complete response, true after one inside it.
  bool midMessage() const { return sawBytes_ && !done_; }
  // The head being parsed or last parsed; views valid as described above.
  const Response& response() const { return resp_; }
  uint64_t bodyBytes() const { return bodyBytes_; }

 private:
  enum class Stop { kNone, kHeaders, kLastChunk, kComplete };

  static int onHeadersComplete(llhttp_t* p);
  static int onBodyData(llhttp_t* p, const char* at, size_t len);
  static int onChunkHeader(llhttp_t* p);
  static int onMessageComplete(llhttp_t* p);

  void startLlhttp();
  Result fail(const char* reason);
  Result execute(const char* data, size_t len, size_t feedOffset);
  Result headDone(const char* end, size_t feedOffset, const char* segBegin);
  Result messageDone(const char* end, const char* segBegin);
  void keepBytes(const char* segBegin, const char* segEnd);
  size_t headEndWithin(const char* data, size_t len) const;

  static const llhttp_settings_t& settings();
  llhttp_t parser_;
  Handler& handler_;
  Limits limits_;
  Response resp_;
  Error error_;
  Phase phase_ = Phase::kIdle;
  Stop stop_ = Stop::kNone;
  bool headRequest_ = false;
  bool connectRequest_ = false;
  bool sawInterim_ = false;
  bool sawBytes_ = false;       // a byte of the expected response has arrived
  bool done_ = false;           // the final response (or an upgrade) is complete
  bool inTrailers_ = false;
  bool headOwned_ = false;      // the head in progress lies at the front of head_
  bool trailersOwned_ = false;  // the trailer section so far lies in trailers_
  size_t upgradeOffset_ = 0;
  uint64_t bodyBytes_ = 0;
  const char* headBegin_ = nullptr;      // first byte of this head
  const char* headEnd_ = nullptr;        // one past its blank line, once complete
  const char* trailersBegin_ = nullptr;  // first byte after the last chunk's line
  HeadBuffer head_;
  std::string trailers_;
};

}  // namespace kuai::parser
