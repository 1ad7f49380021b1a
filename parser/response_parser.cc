#include "parser/response_parser.h"

#include <algorithm>
#include <cstring>

#include "parser/http_grammar.h"

namespace kuai::parser {

namespace {

using detail::isFieldChar;
using detail::isTchar;

inline ResponseParser& self(llhttp_t* p) { return *static_cast<ResponseParser*>(p->data); }

inline bool isDigit(char c) { return c >= '0' && c <= '9'; }

// The most bytes a head may take: a longer one breaks one of the limits
// whatever its content (the status line, every field line counted whole, and
// their CRLFs). Bounds what a head spanning feeds may buffer.
uint64_t maxHeadBytes(const Limits& l) {
  return uint64_t(l.maxRequestLine) + l.maxHeaderBytes + 2 * uint64_t(l.maxHeaders) + 4;
}

uint64_t maxTrailerBytes(const Limits& l) {
  return uint64_t(l.maxHeaderBytes) + 2 * uint64_t(l.maxHeaders) + 2;
}

// One line of a head, without its CRLF. Returns null at a bare CR or LF or when
// no CRLF ends the line before `end`; `next` is then unset.
const char* lineEnd(const char* p, const char* end, const char*& next) {
  for (const char* c = p; c < end; ++c) {
    if (*c == '\n') return nullptr;  // LF without CR
    if (*c == '\r') {
      if (c + 1 == end || c[1] != '\n') return nullptr;  // CR without LF
      next = c + 2;
      return c;
    }
  }
  return nullptr;
}

// Field lines (RFC 9112 §5) from `p` to a blank line that must end exactly at
// `end`: "token:" OWS value OWS, CRLF line ends only, no obs-fold. Appends the
// fields (values trimmed) to `out` when given. Returns an error reason or null.
const char* scanFields(const char* p, const char* end, const Limits& limits,
                       std::vector<Header>* out, const char* tooLarge, const char* invalid) {
  uint64_t total = 0;
  uint32_t count = 0;
  for (;;) {
    const char* next = nullptr;
    const char* eol = lineEnd(p, end, next);
    if (!eol) return invalid;
    if (eol == p) return next == end ? nullptr : invalid;  // the blank line
    if (*p == ' ' || *p == '\t') return "obsolete line folding";
    size_t size = size_t(eol - p);
    if (++count > limits.maxHeaders) return "too many headers";
    total += size;
    if (size - 1 > limits.maxFieldSize || total > limits.maxHeaderBytes) return tooLarge;
    const char* colon = p;
    while (colon < eol && isTchar(static_cast<unsigned char>(*colon))) ++colon;
    if (colon == p || colon == eol || *colon != ':') return invalid;
    for (const char* c = colon + 1; c < eol; ++c) {
      if (!isFieldChar(static_cast<unsigned char>(*c))) return invalid;
    }
    if (out) {
      out->push_back(Header{std::string_view(p, size_t(colon - p)),
                            detail::trim(std::string_view(colon + 1, size_t(eol - colon - 1)))});
    }
    p = next;
  }
}

// "HTTP/1.x SP 3DIGIT [SP reason]": the SP before an empty reason may be
// missing, as llhttp and nginx allow. Fills status, version and reason.
const char* scanStatusLine(const char* p, const char* eol, const Limits& limits, Response& r) {
  if (uint64_t(eol - p) > limits.maxRequestLine) return "status line too long";
  if (eol - p < 12 || std::memcmp(p, "HTTP/", 5) != 0 || !isDigit(p[5]) || p[6] != '.' ||
      !isDigit(p[7]) || p[8] != ' ' || !isDigit(p[9]) || !isDigit(p[10]) || !isDigit(p[11])) {
    return "invalid status line";
  }
  if (p[5] != '1' || p[7] > '1') return "unsupported HTTP version";
  r.versionMajor = 1;
  r.versionMinor = uint8_t(p[7] - '0');
  const char* reason = p + 12;
  if (reason < eol) {
    if (*reason != ' ') return "invalid status line";
    ++reason;
    for (const char* c = reason; c < eol; ++c) {
      if (!isFieldChar(static_cast<unsigned char>(*c))) return "invalid status line";
    }
  }
  r.reason = std::string_view(reason, size_t(eol - reason));
  r.status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  if (r.status < 100 || r.status > 599) return "invalid status code";
  return nullptr;
}

}  // namespace

// The callbacks every response parser shares (one table for the process).
const llhttp_settings_t& ResponseParser::settings() {
  static const llhttp_settings_t table = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_headers_complete = &ResponseParser::onHeadersComplete;
    s.on_body = &ResponseParser::onBodyData;
    s.on_chunk_header = &ResponseParser::onChunkHeader;
    s.on_message_complete = &ResponseParser::onMessageComplete;
    return s;
  }();
  return table;
}

ResponseParser::ResponseParser(Handler& handler, const Limits& limits)
    : handler_(handler), limits_(limits) {
  startLlhttp();
  resp_.headers.reserve(16);
}

// A fresh llhttp for each head: nothing of an earlier message (an interim 1xx's
// Connection field, llhttp's closed state) carries over.
void ResponseParser::startLlhttp() {
  // Strict: no lenient flags, ever.
  llhttp_init(&parser_, HTTP_RESPONSE, &settings());
  parser_.data = this;
}

void ResponseParser::reset(bool headRequest, bool connectRequest) {
  startLlhttp();
  headRequest_ = headRequest;
  connectRequest_ = connectRequest;
  phase_ = Phase::kWaiting;
  stop_ = Stop::kNone;
  error_ = Error{};
  sawInterim_ = false;
  sawBytes_ = false;
  done_ = false;
  inTrailers_ = false;
  trailersOwned_ = false;
  upgradeOffset_ = 0;
  bodyBytes_ = 0;
  headBegin_ = headEnd_ = trailersBegin_ = nullptr;
  head_.clear();
  trailers_.clear();
  resp_.headers.clear();
}

ResponseParser::Result ResponseParser::fail(const char* reason) {
  if (error_.status == 0) error_ = Error{502, reason};
  phase_ = Phase::kError;
  return Result::kError;
}

int ResponseParser::onHeadersComplete(llhttp_t* p) {
  self(p).stop_ = Stop::kHeaders;
  return HPE_PAUSED;  // headDone() checks the head, then resumes
}

int ResponseParser::onBodyData(llhttp_t* p, const char* at, size_t len) {
  ResponseParser& s = self(p);
  s.bodyBytes_ += len;
  s.handler_.onBody(std::string_view(at, len));
  return 0;
}

int ResponseParser::onChunkHeader(llhttp_t* p) {
  if (p->content_length != 0) return 0;
  self(p).stop_ = Stop::kLastChunk;  // the trailer section starts here
  return HPE_PAUSED;
}

int ResponseParser::onMessageComplete(llhttp_t* p) {
  self(p).stop_ = Stop::kComplete;
  return HPE_PAUSED;
}

// The head [headBegin_, end) is complete for llhttp: check it against the
// grammar and the limits, decide how the body is framed, and report it.
ResponseParser::Result ResponseParser::headDone(const char* end, size_t feedOffset,
                                                const char* segBegin) {
  headEnd_ = end;
  Response& r = resp_;
  const char* next = nullptr;
  const char* eol = lineEnd(headBegin_, end, next);
  if (!eol) return fail("invalid status line");
  if (const char* err = scanStatusLine(headBegin_, eol, limits_, r)) return fail(err);
  if (const char* err = scanFields(next, end, limits_, &r.headers, "header too large",
                                   "invalid header")) {
    return fail(err);
  }

  uint32_t lengths = 0, encodings = 0;
  bool onlyChunked = true;
  size_t codings = 0;
  for (const Header& h : r.headers) {
    if (h.name.size() == 14 && equalsIgnoreCase(h.name, "content-length")) {
      if (++lengths > 1) return fail("duplicate Content-Length");
      if (!detail::parseLength(h.value, r.contentLength)) return fail("invalid Content-Length");
    } else if (h.name.size() == 17 && equalsIgnoreCase(h.name, "transfer-encoding")) {
      if (++encodings > 1) return fail("duplicate Transfer-Encoding");
      detail::transferCodings(h.value, onlyChunked, codings);
    }
  }
  if (encodings) {
    if (lengths) return fail("both Content-Length and Transfer-Encoding");
    if (!onlyChunked || codings != 1) return fail("unsupported Transfer-Encoding");
    if (r.versionMinor == 0) return fail("Transfer-Encoding in an HTTP/1.0 response");
    r.chunked = true;
  }
  // llhttp parsed the same head: its framing must agree with ours.
  bool llChunked = (parser_.flags & F_CHUNKED) != 0;
  bool llLength = (parser_.flags & F_CONTENT_LENGTH) != 0;
  bool llEncoding = (parser_.flags & F_TRANSFER_ENCODING) != 0;
  if (parser_.status_code != r.status || parser_.http_major != r.versionMajor ||
      parser_.http_minor != r.versionMinor || llChunked != r.chunked ||
      llEncoding != (encodings > 0) || llLength != (lengths > 0) ||
      (lengths && parser_.content_length != uint64_t(r.contentLength))) {
    return fail("invalid header");
  }

  r.upgrade = r.status == 101 || (connectRequest_ && r.status >= 200 && r.status < 300);
  bool bodyless = headRequest_ || r.upgrade || r.status < 200 || r.status == 204 || r.status == 304;
  r.hasBody = !bodyless && (r.chunked || r.contentLength != 0);
  r.closeDelimited = r.hasBody && !r.chunked && r.contentLength < 0;
  bool close = detail::listsToken(r.headers, "connection", "close");
  bool alive = r.versionMinor >= 1 ? !close
                                   : !close && detail::listsToken(r.headers, "connection", "keep-alive");
  r.keepAlive = alive && !r.closeDelimited && !r.upgrade;
  if (bodyless) parser_.flags |= F_SKIPBODY;  // llhttp completes the message at once

  phase_ = Phase::kBody;
  handler_.onHeaders(r);
  if (r.upgrade) {
    done_ = true;
    handler_.onComplete(r);
    phase_ = Phase::kUpgraded;
    upgradeOffset_ = feedOffset + size_t(end - segBegin);
    return Result::kUpgrade;
  }
  return Result::kOk;
}

// llhttp completed the message at `end`. Checks the trailer section of a
// chunked body, then reports the message; an interim one makes way for the next
// head, a final one must be the last thing in the feed.
ResponseParser::Result ResponseParser::messageDone(const char* end, const char* segBegin) {
  if (inTrailers_) {
    const char* begin = trailersBegin_;
    if (trailersOwned_) {
      trailers_.append(segBegin, size_t(end - segBegin));
      begin = trailers_.data();
      end = begin + trailers_.size();
    }
    if (const char* err = scanFields(begin, end, limits_, nullptr, "trailers too large",
                                     "invalid trailer")) {
      return fail(err);
    }
    // The section without the blank line that ends it.
    resp_.trailers = std::string_view(begin, size_t(end - begin));
    resp_.trailers.remove_suffix(std::min<size_t>(2, resp_.trailers.size()));
  }
  inTrailers_ = false;
  trailersOwned_ = false;
  if (resp_.interim()) {
    sawInterim_ = true;
    phase_ = Phase::kWaiting;
    startLlhttp();
  } else {
    phase_ = Phase::kIdle;
    done_ = true;
  }
  handler_.onComplete(resp_);
  resp_.trailers = {};
  trailers_.clear();
  return Result::kOk;
}

// The feed's buffer is about to go: keep what later bytes need. A head still
// arriving, every byte of it (the next feed appends right after); a complete
// head whose body goes on, the head (its views stay valid until onComplete); a
// trailer section still arriving, its bytes so far.
void ResponseParser::keepBytes(const char* segBegin, const char* segEnd) {
  if (phase_ == Phase::kHead && headBegin_ != head_.data()) {
    headBegin_ = head_.assign(headBegin_, size_t(segEnd - headBegin_));  // headBegin_ may be in head_
  } else if (phase_ == Phase::kBody) {
    // Trailers first: they may lie in head_, which the head's copy replaces.
    if (inTrailers_) {
      if (trailersOwned_) {
        trailers_.append(segBegin, size_t(segEnd - segBegin));
      } else {
        trailers_.assign(trailersBegin_, size_t(segEnd - trailersBegin_));
        trailersOwned_ = true;
      }
    }
    if (headBegin_ != head_.data()) {
      // (Views still point at the bytes copied: rebase from there.)
      const char* from = headBegin_;
      size_t len = size_t(headEnd_ - headBegin_);
      const char* to = head_.assign(from, len);
      moveView(resp_.reason, from, len, to);
      moveFields(resp_.headers, from, len, to);
      headBegin_ = to;
      headEnd_ = to + len;
    }
  }
}

ResponseParser::Result ResponseParser::execute(const char* data, size_t len, size_t feedOffset) {
  const char* p = data;
  const char* end = data + len;
  for (;;) {
    if (phase_ == Phase::kIdle) {
      if (p < end) return fail("unsolicited response data");
      break;
    }
    if (phase_ == Phase::kWaiting) {
      if (p == end) break;
      // llhttp would skip empty lines before a status line: kuai takes none.
      if (*p != 'H') return fail("invalid status line");
      phase_ = Phase::kHead;
      sawBytes_ = true;
      headBegin_ = p;
      headEnd_ = nullptr;
      std::vector<Header> headers = std::move(resp_.headers);  // keeps its capacity
      headers.clear();
      resp_ = Response{};
      resp_.headers = std::move(headers);
    }
    stop_ = Stop::kNone;
    llhttp_errno_t rc = llhttp_execute(&parser_, p, size_t(end - p));
    if (rc == HPE_OK) break;
    if (rc != HPE_PAUSED || stop_ == Stop::kNone) {
      if (phase_ == Phase::kHead) {
        const char* at = llhttp_get_error_pos(&parser_);
        bool firstLine = at && at >= headBegin_ && at <= end && std::find(headBegin_, at, '\n') == at;
        if (rc == HPE_INVALID_CONTENT_LENGTH || rc == HPE_UNEXPECTED_CONTENT_LENGTH) {
          return fail("invalid Content-Length");
        }
        if (rc == HPE_INVALID_TRANSFER_ENCODING) return fail("unsupported Transfer-Encoding");
        return fail(firstLine ? "invalid status line" : "invalid header");
      }
      return fail(inTrailers_ ? "invalid trailer" : "bad chunk");
    }
    const char* pos = llhttp_get_error_pos(&parser_);
    llhttp_resume(&parser_);
    Stop stop = stop_;
    stop_ = Stop::kNone;
    if (stop == Stop::kHeaders) {
      Result r = headDone(pos, feedOffset, data);
      if (r != Result::kOk) return r;
    } else if (stop == Stop::kLastChunk) {
      inTrailers_ = true;
      trailersOwned_ = false;
      trailersBegin_ = pos;
    } else {
      Result r = messageDone(pos, data);
      if (r != Result::kOk) return r;
    }
    p = pos;
  }

  if (phase_ == Phase::kHead && uint64_t(end - headBegin_) > maxHeadBytes(limits_)) {
    return fail("header too large");
  }
  keepBytes(data, end);
  if (inTrailers_ && trailers_.size() > maxTrailerBytes(limits_)) return fail("trailers too large");
  return Result::kOk;
}

// How many of these next bytes of a head held in head_ reach its CRLF CRLF
// (which in strict llhttp ends a head wherever it is); `len` when not in them.
// A head's bytes must be contiguous, its body's need not: this keeps the body
// out of the copy.
size_t ResponseParser::headEndWithin(const char* data, size_t len) const {
  static constexpr char kEnd[] = "\r\n\r\n";
  // A match that began in head_: its last 1..3 bytes.
  for (size_t held = std::min<size_t>(3, head_.size()); held > 0; --held) {
    if (std::memcmp(head_.data() + head_.size() - held, kEnd, held) == 0 &&
        len >= 4 - held && std::memcmp(data, kEnd + held, 4 - held) == 0) {
      return 4 - held;
    }
  }
  const char* end = data + len;
  const char* hit = std::search(data, end, kEnd, kEnd + 4);
  return hit == end ? len : size_t(hit + 4 - data);
}

ResponseParser::Result ResponseParser::feed(const char* data, size_t len) {
  if (phase_ == Phase::kError) return Result::kError;
  if (len == 0) return Result::kOk;  // llhttp: no null + 0
  if (phase_ == Phase::kUpgraded) return fail("data after an upgrade");
  size_t off = 0;
  while (off < len) {
    if (phase_ == Phase::kIdle) return fail("unsolicited response data");
    size_t take = len - off;
    Result r;
    if (phase_ == Phase::kHead) {
      // The head began in an earlier feed and lies at the front of head_: parse
      // on after it, so that the head stays contiguous. Only as many bytes as a
      // head may still take go there; the rest is parsed in place.
      size_t have = head_.size();
      take = std::min<uint64_t>(take, maxHeadBytes(limits_) + 1 - have);
      take = std::min(take, headEndWithin(data + off, take));
      head_.append(data + off, take);  // (no views yet: they are made once the head is whole)
      headBegin_ = head_.data();
      r = execute(head_.data() + have, take, off);
    } else {
      r = execute(data + off, take, off);
    }
    if (r != Result::kOk) return r;
    off += take;
  }
  return Result::kOk;
}

ResponseParser::Result ResponseParser::finish() {
  switch (phase_) {
    case Phase::kIdle:
    case Phase::kUpgraded:
      return Result::kOk;
    case Phase::kError:
      return Result::kError;
    case Phase::kWaiting:
      return fail(sawInterim_ ? "truncated response" : "closed before a response");
    case Phase::kHead:
      return fail("truncated head");
    case Phase::kBody:
      break;
  }
  if (resp_.closeDelimited) {
    phase_ = Phase::kIdle;
    done_ = true;
    handler_.onComplete(resp_);
    return Result::kOk;
  }
  if (inTrailers_) return fail("truncated trailers");
  return fail(resp_.chunked ? "truncated chunked body" : "truncated body");
}

}  // namespace kuai::parser
