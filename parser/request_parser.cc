#include "parser/request_parser.h"

#include <algorithm>
#include <cstring>

#include "parser/http_grammar.h"

namespace kuai::parser {

namespace {

using detail::lower;
using detail::parseLength;
using detail::trim;
using detail::validFieldValue;

inline RequestParser& self(llhttp_t* p) { return *static_cast<RequestParser*>(p->data); }

inline bool within(const char* p, const char* begin, size_t len) {
  return p >= begin && p < begin + len;
}

bool validTarget(std::string_view t) {
  for (unsigned char c : t) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return !t.empty();
}

// The most bytes a request head may take in all, whitespace and line ends
// included: the request line and header limits plus room for the separators of
// every allowed field. Without it, optional whitespace (which no span covers)
// could make a head that spans feeds grow without bound.
uint64_t maxHeadBytes(const Limits& l) {
  return uint64_t(l.maxRequestLine) + l.maxHeaderBytes + 8 * (uint64_t(l.maxHeaders) + 2);
}

}  // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The callbacks every request parser shares (llhttp keeps a pointer to them):
// one table for the process rather than one per connection.
const llhttp_settings_t& RequestParser::settings() {
  static const llhttp_settings_t table = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &RequestParser::onMessageBegin;
    s.on_method = &RequestParser::onMethod;
    s.on_url = &RequestParser::onUrl;
    s.on_version = &RequestParser::onVersion;
    s.on_header_field = &RequestParser::onHeaderField;
    s.on_header_value = &RequestParser::onHeaderValue;
    s.on_header_value_complete = &RequestParser::onHeaderValueComplete;
    s.on_headers_complete = &RequestParser::onHeadersComplete;
    s.on_body = &RequestParser::onBodyData;
    s.on_message_complete = &RequestParser::onMessageComplete;
    return s;
  }();
  return table;
}

RequestParser::RequestParser(Handler& handler, const Limits& limits)
    : handler_(handler), limits_(limits) {
  // Strict: no lenient flags, ever. They are what request smuggling feeds on.
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  req_.headers.reserve(8);  // (grows for the browsers that send more, once per connection)
}

int RequestParser::fail(int status, const char* reason) {
  if (error_.status == 0) error_ = Error{status, reason};
  return HPE_USER;
}

// Appends a span to a view. llhttp splits a span only at the end of a buffer, and
// a head that spans buffers is re-assembled contiguously in head_, so a
// continuation always starts right where the view ends.
bool RequestParser::appendSpan(std::string_view& view, const char* at, size_t len) {
  if (!headBegin_) headBegin_ = at;
  // (An empty span, such as llhttp's for an empty last field value, may be
  // placed past the line's CRLF: it marks no head byte.)
  if (len && at + len > headEnd_) headEnd_ = at + len;
  if (view.data() == nullptr || view.empty()) {
    view = std::string_view(at, len);
    return true;
  }
  if (view.data() + view.size() != at) return false;
  view = std::string_view(view.data(), view.size() + len);
  return true;
}

int RequestParser::onMessageBegin(llhttp_t* p) {
  RequestParser& s = self(p);
  s.req_.method = {};
  s.req_.target = {};
  s.req_.host = {};
  s.req_.headers.clear();
  s.req_.contentLength = -1;
  s.req_.expectContinue = false;
  s.req_.chunked = false;
  s.req_.isHead = false;
  s.req_.upgrade = false;
  s.req_.bodyless = false;
  s.phase_ = Phase::kHead;
  s.inValue_ = false;
  s.lineBytes_ = 0;
  s.headBytes_ = 0;
  s.hostCount_ = 0;
  s.lengthCount_ = 0;
  s.encodingCount_ = 0;
  s.bodyBytes_ = 0;
  s.trailers_.clear();
  s.trailerInValue_ = false;
  s.headBegin_ = nullptr;
  s.headEnd_ = nullptr;
  return 0;
}

int RequestParser::onMethod(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  s.lineBytes_ += len;
  if (s.lineBytes_ > s.limits_.maxRequestLine) return s.fail(414, "request line too long");
  if (!s.appendSpan(s.req_.method, at, len)) return s.fail(400, "bad method");
  return 0;
}

int RequestParser::onUrl(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  s.lineBytes_ += len;
  if (s.lineBytes_ > s.limits_.maxRequestLine) return s.fail(414, "request line too long");
  if (!s.appendSpan(s.req_.target, at, len)) return s.fail(400, "bad request target");
  return 0;
}

int RequestParser::onVersion(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  s.lineBytes_ += len;
  if (s.lineBytes_ > s.limits_.maxRequestLine) return s.fail(414, "request line too long");
  if (!s.headBegin_) s.headBegin_ = at;
  if (at + len > s.headEnd_) s.headEnd_ = at + len;
  return 0;
}

// Spans of a head always lie in one contiguous buffer from headBegin_ (the
// caller's, tail_ or head_), so their distance from it is the head size so far.
bool RequestParser::headTooLong(const char* end) const {
  return headBegin_ && uint64_t(end - headBegin_) > maxHeadBytes(limits_);
}

// Trailer fields (after a chunked body) are counted against the header block
// limit and copied into trailers_ as lines: they must not change the head the
// handler saw, and their spans point into buffers that are gone by onRequest.
int RequestParser::onTrailerSpan(const char* at, size_t len, bool value) {
  headBytes_ += len;
  if (headBytes_ > limits_.maxHeaderBytes) return fail(431, "trailer section too large");
  if (value && !trailerInValue_) trailers_.append(": ", 2);
  if (!value && trailerInValue_) trailers_.append("\r\n", 2);
  trailerInValue_ = value;
  trailers_.append(at, len);
  return 0;
}

int RequestParser::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (s.phase_ == Phase::kBody) return s.onTrailerSpan(at, len, false);
  if (s.headTooLong(at + len)) return s.fail(431, "request head too large");
  if (s.inValue_ || s.req_.headers.empty()) {
    if (s.req_.headers.size() >= s.limits_.maxHeaders) {
      return s.fail(431, "too many header fields");
    }
    s.req_.headers.push_back(Header{});
    s.inValue_ = false;
  }
  Header& h = s.req_.headers.back();
  s.headBytes_ += len;
  if (h.name.size() + len > s.limits_.maxFieldSize) return s.fail(431, "header field too large");
  if (s.headBytes_ > s.limits_.maxHeaderBytes) return s.fail(431, "header block too large");
  if (!s.appendSpan(h.name, at, len)) return s.fail(400, "bad header field");
  return 0;
}

int RequestParser::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  if (s.phase_ == Phase::kBody) return s.onTrailerSpan(at, len, true);
  if (s.headTooLong(at + len)) return s.fail(431, "request head too large");
  if (s.req_.headers.empty()) return s.fail(400, "header value without a name");
  s.inValue_ = true;
  Header& h = s.req_.headers.back();
  s.headBytes_ += len;
  if (h.name.size() + h.value.size() + len > s.limits_.maxFieldSize) {
    return s.fail(431, "header field too large");
  }
  if (s.headBytes_ > s.limits_.maxHeaderBytes) return s.fail(431, "header block too large");
  if (!s.appendSpan(h.value, at, len)) return s.fail(400, "bad header value");
  return 0;
}

int RequestParser::onHeaderValueComplete(llhttp_t* p) {
  RequestParser& s = self(p);
  if (s.phase_ == Phase::kBody) {
    // A trailer field is whole: its value without trailing whitespace; a
    // field with an empty value still gets its ": ".
    std::string& t = s.trailers_;
    if (!s.trailerInValue_) t.append(": ", 2);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
    if (t.size() >= 1 && t.back() == ':') t.push_back(' ');
    size_t start = t.rfind("\r\n");
    start = start == std::string::npos ? 0 : start + 2;
    size_t colon = t.find(": ", start);
    if (colon == std::string::npos) return s.fail(400, "bad trailer field");
    std::string_view name(t.data() + start, colon - start);
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return detail::isTchar(uint8_t(c)); })) {
      return s.fail(400, "bad trailer field name");
    }
    if (!validFieldValue(std::string_view(t).substr(colon + 2))) return s.fail(400, "invalid character in trailer");
    t.append("\r\n", 2);
    s.trailerInValue_ = false;
    return 0;
  }
  if (s.req_.headers.empty()) return 0;
  // A field with an empty value gets no value span: count it as a field anyway.
  s.inValue_ = true;
  Header& h = s.req_.headers.back();
  if (!validFieldValue(h.value)) return s.fail(400, "invalid character in header value");
  h.value = trim(h.value);
  std::string_view n = h.name;
  if (n.size() == 4 && equalsIgnoreCase(n, "host")) {
    ++s.hostCount_;
    s.req_.host = h.value;
  } else if (n.size() == 14 && equalsIgnoreCase(n, "content-length")) {
    ++s.lengthCount_;
    int64_t len = 0;
    if (!parseLength(h.value, len)) return s.fail(400, "malformed Content-Length");
    s.req_.contentLength = len;
  } else if (n.size() == 17 && equalsIgnoreCase(n, "transfer-encoding")) {
    ++s.encodingCount_;
    // Only a single, final "chunked" is understood; anything else is refused.
    bool onlyChunked = true;
    size_t count = 0;
    detail::transferCodings(h.value, onlyChunked, count);
    if (!onlyChunked) return s.fail(501, "unsupported Transfer-Encoding");
    if (count != 1 || s.encodingCount_ > 1) return s.fail(400, "repeated chunked encoding");
  } else if (n.size() == 6 && equalsIgnoreCase(n, "expect")) {
    if (equalsIgnoreCase(h.value, "100-continue")) {
      s.req_.expectContinue = true;
    } else {
      return s.fail(417, "unsupported expectation");
    }
  }
  return 0;
}

int RequestParser::checkHead() {
  Request& r = req_;
  r.versionMajor = parser_.http_major;
  r.versionMinor = parser_.http_minor;
  if (r.versionMajor != 1) return fail(505, "HTTP version not supported");
  if (!validTarget(r.target)) return fail(400, "bad request target");
  if (hostCount_ > 1) return fail(400, "more than one Host header");
  if (hostCount_ == 0 && r.versionMinor >= 1 && requireHost_) return fail(400, "missing Host header");
  if (lengthCount_ > 1) return fail(400, "more than one Content-Length");
  if (encodingCount_ > 0) {
    if (lengthCount_ > 0) return fail(400, "both Content-Length and Transfer-Encoding");
    if (r.versionMinor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    r.chunked = true;
  }
  if (r.contentLength > 0 && uint64_t(r.contentLength) > limits_.maxBodyBytes) {
    return fail(413, "request body too large");
  }
  r.isHead = parser_.method == HTTP_HEAD;
  r.upgrade = parser_.upgrade;
  r.bodyless = !r.chunked && r.contentLength <= 0 && !r.upgrade && parser_.method != HTTP_CONNECT;
  r.keepAlive = llhttp_should_keep_alive(&parser_) &&
                !detail::listsToken(r.headers, "connection", "close");
  if (r.expectContinue && r.versionMinor == 0) r.expectContinue = false;
  return 0;
}

// llhttp 8.1 built without LLHTTP_STRICT_MODE takes any byte after some CRs: the
// one ending the head ("\r\n\rX" ends it too) and the one after an empty field
// value ("X:\rTransfer-Encoding: chunked" is then a second field), and a field
// with an empty name. These are request smuggling vectors. The head is
// contiguous in memory up to the current buffer's end, so check its bytes: after
// the last span only ':' and whitespace (an empty last value), then CRLF CRLF;
// every CR followed by LF, every LF preceded by CR, and no line starting with
// ':' or whitespace. This also gives the head's full size for the whitespace
// bound. Cost: one pass over the head bytes, which llhttp has just touched.
int RequestParser::checkHeadEnd() {
  const char* p = headEnd_;
  if (!p || !bufEnd_ || p > bufEnd_) return 0;
  while (p < bufEnd_ && (*p == ':' || *p == ' ' || *p == '\t')) ++p;
  if (bufEnd_ - p < 4 || std::memcmp(p, "\r\n\r\n", 4) != 0) {
    return fail(400, "head does not end with CRLF CRLF");
  }
  const char* end = p + 4;
  if (headTooLong(end)) return fail(431, "request head too large");
  for (const char* c = headBegin_; c < end; ++c) {
    if (*c == '\r' && (c + 1 == end || c[1] != '\n')) return fail(400, "bare CR in request head");
    if (*c == '\n') {
      if (c == headBegin_ || c[-1] != '\r') return fail(400, "bare LF in request head");
      if (c + 1 < end && (c[1] == ':' || c[1] == ' ' || c[1] == '\t')) {
        return fail(400, "malformed header line");
      }
    }
  }
  return 0;
}

int RequestParser::onHeadersComplete(llhttp_t* p) {
  RequestParser& s = self(p);
  if (int rc = s.checkHeadEnd()) return rc;
  if (int rc = s.checkHead()) return rc;
  s.phase_ = Phase::kBody;
  s.handler_.onHeaders(s.req_);
  return 0;
}

int RequestParser::onBodyData(llhttp_t* p, const char* at, size_t len) {
  RequestParser& s = self(p);
  s.bodyBytes_ += len;
  if (s.bodyBytes_ > s.limits_.maxBodyBytes) return s.fail(413, "request body too large");
  s.handler_.onBody(s.req_, std::string_view(at, len));
  return 0;
}

int RequestParser::onMessageComplete(llhttp_t* p) {
  RequestParser& s = self(p);
  s.phase_ = Phase::kIdle;
  bool done = s.handler_.onRequest(s.req_);
  if (!done) {
    s.paused_ = true;
    s.phase_ = Phase::kBody;  // the head must stay valid while the handler runs
    return HPE_PAUSED;
  }
  return 0;
}

void RequestParser::rebase(const char* from, const char* to, size_t len) {
  moveView(req_.method, from, len, to);
  moveView(req_.target, from, len, to);
  moveView(req_.host, from, len, to);
  moveFields(req_.headers, from, len, to);
  if (headBegin_ && within(headBegin_, from, len)) headBegin_ = to + (headBegin_ - from);
  if (headEnd_ && headEnd_ >= from && headEnd_ <= from + len) headEnd_ = to + (headEnd_ - from);
}

// Copies the current request's head out of a buffer that is about to go away.
void RequestParser::keepHeadBytes(const char* bufBegin, const char* bufEnd) {
  if (!headBegin_ || !within(headBegin_, bufBegin, bufEnd - bufBegin)) return;
  // A head still arriving keeps every byte up to the buffer's end, separators
  // included, so that the next feed appends right after them: spans that are
  // apart in the input (obs-fold) stay apart, whole or split.
  size_t len = (phase_ == Phase::kHead ? bufEnd : headEnd_) - headBegin_;
  const char* from = headBegin_;
  if (from == head_.data()) return;  // already at the front of head_
  rebase(from, head_.assign(from, len), len);
}

RequestParser::Result RequestParser::execute(const char* data, size_t len) {
  const char* end = data + len;
  bufEnd_ = end;
  llhttp_errno_t rc = llhttp_execute(&parser_, data, len);
  while (rc == HPE_PAUSED_UPGRADE && !paused_) {
    // kuai switches no protocol here: the handler answered the request as plain
    // HTTP, so the bytes after it are the next request.
    const char* pos = llhttp_get_error_pos(&parser_);
    llhttp_resume_after_upgrade(&parser_);
    rc = llhttp_execute(&parser_, pos, end - pos);
  }
  if (rc == HPE_OK && phase_ == Phase::kHead && headTooLong(end) &&
      (within(headBegin_, data, len) || head_.holds(data))) {
    fail(431, "request head too large");
    return Result::kError;
  }
  if (rc == HPE_OK) {
    if (phase_ == Phase::kIdle) {
      if (!inTail_) head_.clear();
    } else {
      keepHeadBytes(data, end);
    }
    return Result::kOk;
  }
  if (rc == HPE_PAUSED || (rc == HPE_PAUSED_UPGRADE && paused_)) {
    const char* pos = llhttp_get_error_pos(&parser_);
    if (inTail_) {
      tailPos_ = pos - tail_.data();
    } else {
      tail_.assign(pos, end - pos);
      tailPos_ = 0;
    }
    if (!head_.holds(headBegin_)) keepHeadBytes(data, end);
    return Result::kPaused;
  }
  if (error_.status == 0) {
    switch (rc) {
      case HPE_INVALID_TRANSFER_ENCODING:
        error_ = Error{501, "unsupported Transfer-Encoding"};
        break;
      case HPE_INVALID_VERSION:
        // Also raised for a bad byte after a 1.x version ("HTTP/1.1\rX").
        if (parser_.http_major != 1 || parser_.http_minor > 1) {
          error_ = Error{505, "HTTP version not supported"};
        } else {
          error_ = Error{400, llhttp_get_error_reason(&parser_)};
        }
        break;
      default:
        error_ = Error{400, llhttp_get_error_reason(&parser_)};
        break;
    }
    if (!error_.reason) error_.reason = "bad request";
  }
  return Result::kError;
}

RequestParser::Result RequestParser::feed(const char* data, size_t len) {
  if (error_.status) return Result::kError;
  if (len == 0) return paused_ ? Result::kPaused : Result::kOk;  // llhttp: no null + 0
  if (paused_) {
    if (tailPos_ > 0 && tailPos_ == tail_.size()) {
      tail_.clear();
      tailPos_ = 0;
    }
    tail_.append(data, len);
    return Result::kPaused;
  }
  if (phase_ == Phase::kHead && !head_.empty() && headBegin_) {
    // The head began in an earlier buffer: append and parse it in place so that
    // every view stays contiguous.
    size_t oldSize = head_.size();
    if (const char* old = head_.append(data, len)) rebase(old, head_.data(), oldSize);
    return execute(head_.data() + oldSize, len);
  }
  return execute(data, len);
}

RequestParser::Result RequestParser::resume() {
  if (!paused_) return Result::kOk;
  paused_ = false;
  phase_ = Phase::kIdle;
  head_.clear();
  headBegin_ = headEnd_ = nullptr;
  llhttp_resume(&parser_);
  if (tailPos_ >= tail_.size()) {
    tail_.clear();
    tailPos_ = 0;
    return Result::kOk;
  }
  inTail_ = true;
  Result r = execute(tail_.data() + tailPos_, tail_.size() - tailPos_);
  inTail_ = false;
  if (r != Result::kPaused) {
    tail_.clear();
    tailPos_ = 0;
  }
  return r;
}

}  // namespace kuai::parser
