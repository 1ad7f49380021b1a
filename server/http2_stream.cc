#include "server/http2_stream.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "server/header_lines.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/reactor.h"
#include "server/thread_context.h"

namespace kuai::server {

namespace {

// Fields that belong to one HTTP/1.1 connection, never sent in HTTP/2
// (RFC 9113 §8.2.2).
bool connectionSpecific(std::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade";
}

// Response body buffers of finished streams, reused by the thread's next ones.
constexpr size_t kPooledBody = 64 * 1024;
constexpr size_t kBodyPoolSize = 64;
std::vector<std::string>& bodyPool() {
  static thread_local std::vector<std::string> pool;
  return pool;
}

// File bytes read ahead for the DATA frames of one sendFrames() batch: a
// range goes out one frame at a time (16 KiB, the usual client frame size),
// and a pread per frame was a syscall per 16 KiB. One read of up to
// kReadAhead serves the batch's frames of that range (a batch fills one
// connection's output, kSendHighWater, before the next connection's). It is
// dropped when the batch ends, so no bytes are served from it later.
constexpr size_t kReadAhead = 256 * 1024;
struct ReadAhead {
  std::shared_ptr<OpenFile> file;  // none: nothing read ahead
  uint64_t offset = 0;
  size_t length = 0;
  std::unique_ptr<char[]> buffer;
};
ReadAhead& readAhead() {
  static thread_local ReadAhead ra;
  return ra;
}

nghttp2_nv field(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// A response head's fields: on the stack up to a point, then on the heap.
class NvList {
 public:
  void add(const nghttp2_nv& nv) {
    if (n_ < kInline) {
      inline_[n_++] = nv;
      return;
    }
    if (heap_.empty()) heap_.assign(inline_, inline_ + n_);
    heap_.push_back(nv);
    ++n_;
  }
  const nghttp2_nv* data() const { return heap_.empty() ? inline_ : heap_.data(); }
  size_t size() const { return n_; }

 private:
  static constexpr size_t kInline = 40;
  nghttp2_nv inline_[kInline];
  std::vector<nghttp2_nv> heap_;
  size_t n_ = 0;
};

// Header lines ("Name: value\r\n" each) as fields: names lower-cased into
// `lower` (sized here, so the views stay put until nghttp2 copies them),
// values trimmed, connection-specific fields left out.
void addLines(NvList& nv, std::string& lower, std::string_view headerLines) {
  lower.assign(headerLines.size(), '\0');  // room for every name, lower-cased; never reallocated
  char* w = lower.data();
  forEachHeaderLine(headerLines, [&](std::string_view name, std::string_view value, std::string_view) {
    if (name.empty()) return;
    char* nameAt = w;
    for (char c : name) *w++ = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
    std::string_view lowered(nameAt, name.size());
    if (!connectionSpecific(lowered)) nv.add(field(lowered, value));
  });
}

}  // namespace

void http2::dropReadAhead() { readAhead().file.reset(); }

Http2Session::Stream::~Stream() {
  // A small body buffer goes back to the thread's pool for the next stream.
  // (An unused string's own inline room is not worth keeping.)
  if (body_.capacity() > std::string().capacity() && body_.capacity() <= kPooledBody &&
      bodyPool().size() < kBodyPoolSize) {
    body_.clear();
    bodyPool().emplace_back().swap(body_);
  }
}

void Http2Session::Stream::sendBody(Exchange&, std::string_view bytes) {
  if (!files_.empty()) {
    // After a file range (a multipart/byteranges body): in turn, not before it.
    files_.push_back({nullptr, 0, 0, std::string(bytes)});
    resume();
    return;
  }
  if (body_.empty() && body_.capacity() < bytes.size() && !bodyPool().empty()) {
    body_.swap(bodyPool().back());
    bodyPool().pop_back();
  }
  body_.append(bytes);
  resume();
}

void Http2Session::Stream::release() {
  account();
  // The connection's window gets back what this stream held.
  if (unacked_) nghttp2_session_consume_connection(session_.session_, unacked_);
  unacked_ = 0;
  if (!exchange_) return;
  std::shared_ptr<Exchange> ex = std::move(exchange_);
  // (A handler whose request was refused mid-body lost the body.)
  bool aborted = (!responseEnded_ && !ex->ended()) || bodyCut_;
  ex->detach();
  if (aborted && peerReset_ >= 0) ex->setPeerResetCode(uint32_t(peerReset_));
  if (aborted && ex->listener()) ex->listener()->onAbort();
}

void Http2Session::Stream::account() {
  if (!startUs_) return;
  uint64_t us = monotonicMicros() - startUs_;
  startUs_ = 0;
  ThreadContext& ctx = session_.reactor_.context();
  ctx.stats().record(status_, us, ReactorStats::kHttp2);
  if (!ctx.logging()) return;
  std::string line;
  line.append(request_.method).append(" ").append(request_.target).append(" HTTP/2.0");
  formatCombined(ctx.logBuffer(), session_.transport_.peerAddress(), session_.reactor_.nowSeconds(), line,
                 status_, respBytes_, request_.header("referer"), request_.header("user-agent"));
}

bool Http2Session::Stream::addField(std::string_view name, std::string_view value, const parser::Limits& limits) {
  fieldBytes_ += name.size() + value.size();
  if (fieldBytes_ > limits.maxHeaderBytes || fieldsAt_.size() >= limits.maxHeaders ||
      name.size() + value.size() > limits.maxFieldSize) {
    refuseStatus_ = 431;
    return true;  // keep decoding (HPACK state), answer 431 once the block ends
  }
  if (!name.empty() && name[0] == ':') {
    int kind = name == ":method"      ? 0
               : name == ":path"      ? 1
               : name == ":scheme"    ? 2
               : name == ":authority" ? 3
                                      : -1;
    if (kind < 0) return false;  // nghttp2 checks these; unknown ones are errors
    Span* pseudo[] = {&method_, &path_, &scheme_, &authority_};
    *pseudo[kind] = Span{uint32_t(fieldText_.size()), uint32_t(value.size())};
    // (nghttp2 refuses a repeated pseudo-header: at most four come.)
    if (pseudoCount_ < 4) pseudoOrder_ |= uint8_t(kind << (2 * pseudoCount_++));
    fieldText_.append(value);
    return true;
  }
  fieldsAt_.push_back(FieldAt{uint32_t(fieldText_.size()), uint32_t(name.size()), uint32_t(value.size())});
  fieldText_.append(name).append(value);
  return true;
}

bool Http2Session::Stream::addTrailer(std::string_view name, std::string_view value,
                                      const parser::Limits& limits) {
  fieldBytes_ += name.size() + value.size();
  if (fieldBytes_ > limits.maxHeaderBytes || fieldsAt_.size() + ++trailerCount_ > limits.maxHeaders ||
      name.size() + value.size() > limits.maxFieldSize) {
    return false;  // the stream is reset
  }
  requestTrailers_.append(name).append(": ").append(value).append("\r\n");
  return true;
}

bool Http2Session::Stream::finishHead(int& status) {
  request_ = parser::Request();
  request_.streamId = id_;
  bool hostField = false;
  for (const FieldAt& f : fieldsAt_) {
    if (text(Span{f.at, f.nameLen}) == "host") hostField = true;
  }
  // :authority is the Host of an HTTP/1.1 request (RFC 9113 §8.3.1): handlers
  // see it as a host field when the client sent none.
  if (!refuseStatus_ && !hostField && authority_.len) {
    fieldsAt_.push_back(FieldAt{uint32_t(fieldText_.size()), 4, authority_.len});
    fieldText_.append("host").append(text(authority_));
    request_.hostFromAuthority = true;
  }
  // No more appends: views into fieldText_ stay put from here on.
  request_.method = text(method_);
  request_.target = text(path_);
  if (refuseStatus_) {
    status = refuseStatus_;
    return false;
  }
  request_.versionMajor = 2;
  request_.versionMinor = 0;
  request_.keepAlive = true;
  request_.isHead = request_.method == "HEAD";
  request_.scheme = text(scheme_);
  request_.authority = text(authority_);
  request_.pseudoOrder = pseudoOrder_;
  request_.pseudoCount = pseudoCount_;
  request_.headers.reserve(fieldsAt_.size());
  for (const FieldAt& f : fieldsAt_) {
    std::string_view n = text(Span{f.at, f.nameLen});
    std::string_view v = text(Span{f.at + f.nameLen, f.valueLen});
    request_.headers.push_back({n, v});
    if (n == "host") request_.host = v;
    if (n == "content-length") {
      uint64_t len = 0;
      bool digits = !v.empty() && v.size() <= 18;
      for (char c : v) {
        if (c < '0' || c > '9') digits = false;
        len = len * 10 + uint64_t(c - '0');
      }
      if (digits) request_.contentLength = int64_t(len);
    }
    if (n == "expect" && parser::equalsIgnoreCase(v, "100-continue")) request_.expectContinue = true;
  }
  if (request_.contentLength > 0 && uint64_t(request_.contentLength) > session_.reactor_.config().limits.maxBodyBytes) {
    status = 413;
    return false;
  }
  return true;
}

// A 1xx as a HEADERS frame without END_STREAM; its fields lower-cased,
// connection-specific ones left out.
void Http2Session::Stream::sendInformational(Exchange&, int status, std::string_view headerLines) {
  if (headSent_ || aborted_) return;
  std::string statusText = std::to_string(status);
  std::string lower;
  NvList nv;
  nv.add(field(":status", statusText));
  addLines(nv, lower, headerLines);
  nghttp2_submit_headers(session_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, nv.data(), nv.size(), nullptr);
  session_.pump();
}

void Http2Session::Stream::sendHead(Exchange& ex, int status, std::string_view, std::string_view headerLines,
                                    int64_t length, int, bool serverField) {
  if (headSent_ || aborted_) return;
  headSent_ = true;
  status_ = status;
  std::string statusText = std::to_string(status);
  std::string lengthText = std::to_string(length);
  std::string_view date = session_.reactor_.dateLine();  // "Date: ...\r\n"
  date = date.substr(6, date.size() - 8);
  // The lower-cased names go into the thread's buffer, sized up front so the
  // views into it stay put until nghttp2 has copied them.
  static thread_local std::string lower;
  if (lower.size() < headerLines.size()) lower.resize(headerLines.size());
  char* w = lower.data();
  NvList nv;
  nv.add(field(":status", statusText));
  if (serverField) {
    nv.add(field("server", "kuai"));
    nv.add(field("date", date));
  }
  bool hasLength = false;
  // A script's own Date field (or none: sendDate false) stays as given.
  bool ownDate = !serverField && (ex.headFlags() & Exchange::kOwnDate);
  const char* p = headerLines.data();
  const char* end = p + headerLines.size();
  while (p < end) {
    const char* eol = static_cast<const char*>(std::memchr(p, '\r', size_t(end - p)));
    if (!eol) eol = end;
    const char* colon = static_cast<const char*>(std::memchr(p, ':', size_t(eol - p)));
    const char* next = eol + (eol + 1 < end && eol[1] == '\n' ? 2 : 1);
    if (!colon || colon == p) {
      p = next;
      continue;
    }
    const char* v = colon + 1;
    const char* ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) ++v;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) --ve;
    size_t nameLen = size_t(colon - p);
    char* nameAt = w;
    for (const char* c = p; c < colon; ++c) *w++ = *c >= 'A' && *c <= 'Z' ? char(*c - 'A' + 'a') : *c;
    p = next;
    std::string_view name(nameAt, nameLen);
    bool skip = false;
    switch (nameLen) {
      case 4: skip = name == "date" && !ownDate; break;
      case 6: skip = serverField && name == "server"; break;
      case 14: if (name == "content-length") hasLength = true; break;
      default: skip = connectionSpecific(name); break;
    }
    if (skip) continue;
    nv.add(field(name, std::string_view(v, size_t(ve - v))));
  }
  bodyless_ = ex.bodyless();
  if (length >= 0 && !hasLength && status != 204 && status != 304) nv.add(field("content-length", lengthText));
  // A script's response: its own fields first, then date (as Node's http2).
  if (!serverField && !ownDate) nv.add(field("date", date));
  if (bodyless_ || length == 0) {
    // The head is the whole response: END_STREAM on HEADERS.
    responseEnded_ = true;
    nghttp2_submit_response(session_.session_, id_, nv.data(), nv.size(), nullptr);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = &Stream::read;
    nghttp2_submit_response(session_.session_, id_, nv.data(), nv.size(), &provider);
  }
  session_.pump();
}

ssize_t Http2Session::Stream::read(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                                   nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  size_t n = 0;
  bool drained;
  s->next_ = FileRange{nullptr, s->bodyAt_, 0, {}};
  s->nextHeld_ = false;
  if (!s->held_.bytes.empty()) {
    n = std::min(length, s->held_.bytes.size());
    s->next_.length = n;
    s->nextHeld_ = true;
    drained = n == s->held_.bytes.size() && s->bodyAt_ == s->body_.size() && s->files_.empty();
  } else if (s->bodyAt_ < s->body_.size() || (!s->files_.empty() && !s->files_.front().file)) {
    if (s->bodyAt_ == s->body_.size()) {
      // Bytes written after a file range: their turn.
      s->body_ = std::move(s->files_.front().bytes);
      s->bodyAt_ = 0;
      s->next_.offset = 0;
      s->files_.erase(s->files_.begin());
    }
    n = std::min(length, s->body_.size() - s->bodyAt_);
    s->next_.length = n;
    drained = s->bodyAt_ + n == s->body_.size() && s->files_.empty();
  } else if (!s->files_.empty()) {
    FileRange& f = s->files_.front();
    n = size_t(std::min<uint64_t>({f.length, uint64_t(length), http2::kFileChunk}));
    s->next_ = FileRange{f.file, f.offset, n, {}};
    f.offset += n;
    f.length -= n;
    if (f.length == 0) s->files_.erase(s->files_.begin());
    drained = s->files_.empty();
  } else {
    drained = true;
  }
  if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  s->respBytes_ += n;
  // A writer waiting for room (write() returned false) hears onDrain once
  // pump() is out of nghttp2.
  if (s->exchange_ && s->exchange_->waitingDrain) s->session_.drainDue_ = true;
  if (drained && s->ended_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    s->responseEnded_ = true;
    if (!s->trailers_.empty()) {
      // The trailing HEADERS carries END_STREAM instead of this frame.
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      std::string lower;
      NvList nv;
      addLines(nv, lower, s->trailers_);
      nghttp2_submit_trailer(s->session_.session_, s->id_, nv.data(), nv.size());
      s->trailers_.clear();
    }
  } else if (n == 0) {
    s->deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return ssize_t(n);
}

int Http2Session::Stream::sendData(nghttp2_session*, nghttp2_frame*, const uint8_t* frameHead, size_t length,
                                   nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  Transport& t = s->session_.transport_;
  // One mem_send call goes on through every DATA frame the windows allow:
  // past the high-water mark, nghttp2 keeps this frame and asks again once
  // the output has drained (pump()).
  if (t.pendingBytes() >= http2::kSendHighWater) return NGHTTP2_ERR_WOULDBLOCK;
  FileRange next = std::move(s->next_);
  s->next_ = FileRange{};
  std::string& out = t.output().buffer();
  size_t at = out.size();
  out.append(reinterpret_cast<const char*>(frameHead), 9);  // no padding is ever asked for
  if (s->nextHeld_) {
    out.append(s->held_.bytes.data(), length);
    s->held_.bytes.remove_prefix(length);
    if (s->held_.bytes.empty()) s->held_.owner.reset();
    return 0;
  }
  if (!next.file) {
    out.append(s->body_, next.offset, length);
    s->bodyAt_ += length;
    if (s->bodyAt_ == s->body_.size()) {
      s->body_.clear();
      s->bodyAt_ = 0;
    }
    return 0;
  }
  if (!t.isTls() && length >= http2::kFileChunk) {
    t.output().appendFile(std::move(next.file), next.offset, length);
    return 0;
  }
  if (out.capacity() < at + 9 + length) {
    // Frames are appended until the high-water mark, and the buffer goes back
    // to the allocator once sent: one allocation for the whole batch instead
    // of a copy at every doubling.
    out.reserve(std::max(at + 9 + length, http2::kSendHighWater + http2::kFileChunk + 1024));
  }
  ReadAhead& ra = readAhead();
  if (ra.file != next.file || next.offset < ra.offset || next.offset + length > ra.offset + ra.length) {
    // This frame and what read() left of the same range after it.
    uint64_t want = length;
    if (!s->files_.empty() && s->files_.front().file == next.file &&
        s->files_.front().offset == next.offset + length) {
      want += s->files_.front().length;
    }
    if (!ra.buffer) ra.buffer.reset(new char[kReadAhead]);
    size_t n = size_t(std::min<uint64_t>(want, kReadAhead));
    ssize_t got = ::pread(next.file->fd, ra.buffer.get(), n, off_t(next.offset));
    if (got < ssize_t(length)) {
      // The file shrank: this frame cannot be sent; the stream is reset.
      ra.file.reset();
      out.resize(at);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    ra.file = next.file;
    ra.offset = next.offset;
    ra.length = size_t(got);
  }
  out.append(ra.buffer.get() + (next.offset - ra.offset), length);
  return 0;
}

}  // namespace kuai::server
