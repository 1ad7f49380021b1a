#include "server/http2_session.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "server/block_pool.h"
#include "server/reactor.h"
#include "server/metrics.h"
#include "server/router.h"
#include "server/thread_context.h"
#include "server/static_files.h"

namespace kuai::server {

namespace {

constexpr uint32_t kMaxConcurrentStreams = 100;
constexpr int32_t kStreamWindow = 1 << 20;       // 1 MiB per stream
constexpr int32_t kConnectionWindow = 16 << 20;  // 16 MiB per connection
constexpr size_t kSendHighWater = 256 * 1024;    // stop producing frames above this much unsent output
constexpr size_t kFileChunk = 64 * 1024;
constexpr double kResetBurst = 1000;
constexpr double kResetRate = 33;  // per second
// What a refused stream's client may still upload (read and dropped) before
// the stream is cancelled.
constexpr uint64_t kRefusedDiscard = 8 << 20;

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
  lower.assign(headerLines.size(), '\0');
  char* w = lower.data();
  for (std::string_view rest = headerLines; !rest.empty();) {
    size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    char* nameAt = w;
    for (char c : line.substr(0, colon)) *w++ = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
    std::string_view name(nameAt, colon);
    if (connectionSpecific(name)) continue;
    nv.add(field(name, value));
  }
}

}  // namespace

// One stream: its request (fields owned here, so the parser::Request's views
// stay valid for the handler), the exchange answering it, and the response
// body waiting for the stream's window.
class Http2Session::Stream final : public ExchangeSink {
 public:
  Stream(Http2Session& session, int32_t id) : session_(session), id_(id) {}
  static void* operator new(size_t n) {
    void* p = block_pool::allocate(n);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void operator delete(void* p) { block_pool::release(p); }

  // ExchangeSink.
  void sendHead(Exchange& ex, int status, std::string_view reason, std::string_view headerLines, int64_t length,
                int keepAliveSeconds, bool serverField) override;
  ~Stream() override {
    // A small body buffer goes back to the thread's pool for the next stream.
    // (An unused string's own inline room is not worth keeping.)
    if (body_.capacity() > std::string().capacity() && body_.capacity() <= kPooledBody &&
        bodyPool().size() < kBodyPoolSize) {
      body_.clear();
      bodyPool().emplace_back().swap(body_);
    }
  }
  void sendBody(Exchange&, std::string_view bytes) override {
    if (body_.empty() && body_.capacity() < bytes.size() && !bodyPool().empty()) {
      body_.swap(bodyPool().back());
      bodyPool().pop_back();
    }
    body_.append(bytes);
    resume();
  }
  void sendBodyHeld(Exchange& ex, std::string_view bytes, const std::shared_ptr<const void>& hold) override {
    if (!held_.bytes.empty() || bodyAt_ < body_.size() || !files_.empty()) return sendBody(ex, bytes);
    held_ = {bytes, hold};  // sent from where it lies, no copy
    resume();
  }
  void sendFile(Exchange&, std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) override {
    files_.push_back({std::move(file), offset, length});
    resume();
  }
  void sendEnd(Exchange& ex) override {
    ended_ = true;
    trailers_ = ex.trailers();  // sent as HEADERS after the last DATA frame
    resume();
  }
  void sendInformational(Exchange&, int status, std::string_view headerLines) override;
  // HTTP/2 has no Upgrade (RFC 9113 §8.6): the stream is refused.
  void switchProtocols(Exchange& ex, std::string_view, bool) override { abortResponse(ex); }
  void sendRaw(Exchange& ex, std::string_view) override { abortResponse(ex); }
  void abortResponse(Exchange& ex) override {
    aborted_ = true;
    uint32_t code = ex.resetCode() >= 0 ? uint32_t(ex.resetCode()) : uint32_t(NGHTTP2_INTERNAL_ERROR);
    nghttp2_submit_rst_stream(session_.session_, NGHTTP2_FLAG_NONE, id_, code);
    session_.pump();
  }
  size_t pendingBytes(const Exchange&) const override {
    size_t files = 0;
    for (const auto& f : files_) files += size_t(f.length);
    // This stream's own backlog: the connection's output is bounded by
    // pump() (kSendHighWater), and one stream's writer must not wait for
    // another's.
    return held_.bytes.size() + body_.size() - bodyAt_ + files;
  }
  // The handler's pace for the request body: while paused, what arrives is
  // not acknowledged, so the client's window closes (the stream's window
  // bounds what can still come).
  void setReading(Exchange&, bool on) override {
    paused_ = !on;
    if (on && unacked_) {
      nghttp2_session_consume(session_.session_, id_, unacked_);
      unacked_ = 0;
      session_.pump();
    }
  }
  std::string_view peerAddress() override { return session_.transport_.peerAddress(); }
  int peerPort() override { return session_.transport_.peerPort(); }
  bool encrypted() const override { return session_.transport_.isTls(); }
  uint64_t connectionId() const override { return session_.transport_.id(); }

  // The stream is gone: the exchange is cut loose, its handler told of an
  // abort unless the whole response went out.
  void release() {
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

  // Metrics and the access log, once per stream that got a response head.
  void account() {
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

  // The request as it arrives.
  bool addField(std::string_view name, std::string_view value, const parser::Limits& limits);
  // A field of the request's trailing HEADERS (after its body), kept as a
  // "name: value\r\n" line; counted against the same limits as the head.
  bool addTrailer(std::string_view name, std::string_view value, const parser::Limits& limits);
  // Builds request_ from the fields; false (with the status to answer) when
  // the header block does not make a request.
  bool finishHead(int& status);

  // nghttp2's data source: the response body as the window allows. It only
  // sizes each DATA frame (NGHTTP2_DATA_FLAG_NO_COPY); sendData then writes
  // the frame straight into the connection's output: file bytes read there
  // once (or, in clear text with frames of 64 KiB and more, sent with
  // sendfile), memory bytes copied there once.
  static ssize_t read(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                      nghttp2_data_source* source, void* user);
  static int sendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* frameHead, size_t length,
                      nghttp2_data_source* source, void* user);

  Http2Session& session_;
  int32_t id_;
  // The request's fields as they arrive: names and values back to back in
  // one buffer, the views made once the block is complete (finishHead).
  struct Span {
    uint32_t at = 0, len = 0;
  };
  struct FieldAt {
    uint32_t at, nameLen, valueLen;  // the value follows the name
  };
  std::string_view text(Span s) const { return std::string_view(fieldText_).substr(s.at, s.len); }
  std::basic_string<char, std::char_traits<char>, block_pool::Allocator<char>> fieldText_;
  std::vector<FieldAt, block_pool::Allocator<FieldAt>> fieldsAt_;
  Span method_, path_, authority_, scheme_;
  size_t fieldBytes_ = 0;
  int refuseStatus_ = 0;  // the header block broke a limit: answer this
  parser::Request request_;
  Handler* handler_ = nullptr;
  std::shared_ptr<const void> table_;  // the route table it was routed by
  std::shared_ptr<Exchange> exchange_;
  uint64_t bodyBytes_ = 0;
  bool dispatched_ = false;
  bool told_ = false;        // the handler has the request
  bool remoteEnded_ = false;
  bool headSent_ = false;
  bool bodyless_ = false;
  bool deferred_ = false;    // the data source waits for more body
  bool ended_ = false;       // the handler ended the body
  bool aborted_ = false;
  bool responseEnded_ = false;  // END_STREAM is queued: a close after it is no abort
  // Answered with an error page (refuse()): what the client still uploads is
  // read and dropped, up to kRefusedDiscard, so that a client still sending
  // gets to its page. (RST_STREAM NO_ERROR after the page, as RFC 9113 §8.1
  // allows, is taken for a failure by Debian's curl.)
  bool refused_ = false;
  bool bodyCut_ = false;  // refused after its handler had the request, mid-body
  uint64_t discarded_ = 0;  // body bytes dropped since the refusal
  int64_t peerReset_ = -1;  // the client's RST_STREAM code, once it sent one
  bool paused_ = false;         // the handler paused the body (pauseBody)
  size_t unacked_ = 0;          // body bytes received while paused, not yet acknowledged
  uint64_t startUs_ = 0;        // when its head was complete (0: not counted)
  int status_ = 0;
  uint64_t respBytes_ = 0;
  struct FileRange {
    std::shared_ptr<OpenFile> file;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::vector<FileRange> files_;
  // The body in memory: first bytes kept alive elsewhere (sendBodyHeld),
  // then bytes copied here.
  struct HeldBytes {
    std::string_view bytes;
    std::shared_ptr<const void> owner;
  } held_;
  std::string body_;
  size_t bodyAt_ = 0;
  std::string trailers_;         // the response's, sent after its body
  std::string requestTrailers_;  // the request's, handed over at its end
  size_t trailerCount_ = 0;
  bool nextHeld_ = false;  // next_ is from held_
  // The DATA frame read() sized, for sendData: from the file range (its
  // file and offset) or from body_ at bodyAt_ (file == null).
  FileRange next_;

 private:
  void resume() {
    if (deferred_) {
      deferred_ = false;
      nghttp2_session_resume_data(session_.session_, id_);
    }
    session_.pump();
  }
};

bool Http2Session::Stream::addField(std::string_view name, std::string_view value, const parser::Limits& limits) {
  fieldBytes_ += name.size() + value.size();
  if (fieldBytes_ > limits.maxHeaderBytes || fieldsAt_.size() >= limits.maxHeaders ||
      name.size() + value.size() > limits.maxFieldSize) {
    refuseStatus_ = 431;
    return true;  // keep decoding (HPACK state), answer 431 once the block ends
  }
  if (!name.empty() && name[0] == ':') {
    Span* pseudo = name == ":method"      ? &method_
                   : name == ":path"      ? &path_
                   : name == ":authority" ? &authority_
                   : name == ":scheme"    ? &scheme_
                                          : nullptr;
    if (!pseudo) return false;  // nghttp2 checks these; unknown ones are errors
    *pseudo = Span{uint32_t(fieldText_.size()), uint32_t(value.size())};
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
  s->next_ = FileRange{nullptr, s->bodyAt_, 0};
  s->nextHeld_ = false;
  if (!s->held_.bytes.empty()) {
    n = std::min(length, s->held_.bytes.size());
    s->next_.length = n;
    s->nextHeld_ = true;
    drained = n == s->held_.bytes.size() && s->bodyAt_ == s->body_.size() && s->files_.empty();
  } else if (s->bodyAt_ < s->body_.size()) {
    n = std::min(length, s->body_.size() - s->bodyAt_);
    s->next_.length = n;
    drained = s->bodyAt_ + n == s->body_.size() && s->files_.empty();
  } else if (!s->files_.empty()) {
    FileRange& f = s->files_.front();
    n = size_t(std::min<uint64_t>({f.length, uint64_t(length), kFileChunk}));
    s->next_ = FileRange{f.file, f.offset, n};
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
  if (t.pendingBytes() >= kSendHighWater) return NGHTTP2_ERR_WOULDBLOCK;
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
  if (!t.isTls() && length >= kFileChunk) {
    t.output().appendFile(std::move(next.file), next.offset, length);
    return 0;
  }
  if (out.capacity() < at + 9 + length) {
    // Frames are appended until the high-water mark, and the buffer goes back
    // to the allocator once sent: one allocation for the whole batch instead
    // of a copy at every doubling.
    out.reserve(std::max(at + 9 + length, kSendHighWater + kFileChunk + 1024));
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

Http2Session::Http2Session(Transport& transport, const Listener& listener)
    : transport_(transport),
      reactor_(transport.reactor()),
      listenerHandler_(listener.handler),
      resetTokens_(kResetBurst) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, &onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &onStreamClose);
  nghttp2_session_callbacks_set_send_data_callback(cb, &Stream::sendData);
  // DATA frames up to 64 KiB where the client allows them (fewer frames,
  // and sendfile-sized ranges in clear text).
  nghttp2_session_callbacks_set_data_source_read_length_callback(
      cb, [](nghttp2_session*, uint8_t, int32_t, int32_t connWindow, int32_t streamWindow, uint32_t maxFrame,
             void*) -> ssize_t {
        int64_t n = std::min<int64_t>({int64_t(connWindow), int64_t(streamWindow), int64_t(maxFrame),
                                       int64_t(kFileChunk)});
        return ssize_t(std::max<int64_t>(n, 1));
      });
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  const parser::Limits& limits = reactor_.config().limits;
  // Header blocks larger than the limits are refused while being decoded.
  nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_continuations(opt, 8);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  // Request bodies are acknowledged at the handler's pace (setReading).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Priorities are RFC 9218's (below): closed streams need not be kept for an
  // RFC 7540 dependency tree.
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_session_server_new3(&session_, cb, this, opt, block_pool::nghttp2Allocator());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, uint32_t(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.maxHeaderBytes + 32 * limits.maxHeaders},
      // RFC 9218: the priority field and PRIORITY_UPDATE order the responses;
      // RFC 7540 priority signals are ignored.
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof(settings) / sizeof(settings[0]));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  lastActiveMs_ = lastProgressMs_ = resetRefillMs_ = reactor_.nowMs();
  settingsAckDueMs_ = lastActiveMs_ + std::max<uint64_t>(reactor_.config().timeouts.headerMs, 1);
}

Http2Session::~Http2Session() {
  onClose();
  nghttp2_session_del(session_);
}

Http2Session::Stream* Http2Session::stream(int32_t id) {
  // A header block's fields and a body's chunks come one callback each, for
  // the same stream: the last one found is asked first.
  if (lastStream_ && lastStream_->id_ == id) return lastStream_;
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  lastStream_ = it->second.get();
  return lastStream_;
}

int Http2Session::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* h = static_cast<Http2Session*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  std::unique_ptr<Stream>& slot = h->streams_[frame->hd.stream_id];
  slot = std::make_unique<Stream>(*h, frame->hd.stream_id);
  h->lastStream_ = slot.get();
  return 0;
}

int Http2Session::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                           const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  auto* h = static_cast<Http2Session*>(self);
  Stream* s = h->stream(frame->hd.stream_id);
  if (!s) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  const parser::Limits& limits = h->reactor_.config().limits;
  bool ok = s->dispatched_ ? frame->headers.cat != NGHTTP2_HCAT_HEADERS || s->addTrailer(n, v, limits)
                           : s->addField(n, v, limits);
  return ok ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int Http2Session::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* h = static_cast<Http2Session*>(self);
  uint64_t now = h->reactor_.nowMs();
  h->lastActiveMs_ = now;
  if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    h->settingsAckDueMs_ = 0;
    return 0;
  }
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    if (Stream* s = h->stream(frame->hd.stream_id)) s->peerReset_ = int64_t(frame->rst_stream.error_code);
    h->resetTokens_ = std::min(kResetBurst, h->resetTokens_ + double(now - h->resetRefillMs_) * kResetRate / 1000);
    h->resetRefillMs_ = now;
    h->resetTokens_ -= 1;
    if (h->resetTokens_ < 0) h->goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
  }
  Stream* s = h->stream(frame->hd.stream_id);
  if (!s) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !s->dispatched_) {
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s->remoteEnded_ = true;
    h->dispatch(*s);
    return 0;
  }
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    s->remoteEnded_ = true;
    if (s->refused_) return 0;  // its handler, if any, heard of an abort instead
    if (!s->requestTrailers_.empty() && s->exchange_) {
      s->exchange_->setRequestTrailers(std::move(s->requestTrailers_));
    }
    h->bodyEnd(*s);
  }
  return 0;
}

int Http2Session::onDataChunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* self) {
  auto* h = static_cast<Http2Session*>(self);
  Stream* s = h->stream(id);
  if (!s || !s->exchange_) {
    nghttp2_session_consume_connection(h->session_, len);
    return 0;
  }
  s->bodyBytes_ += len;
  if (s->refused_) {
    // Answered with an error page: the rest is dropped, the windows kept
    // open up to a bound, then the stream is cancelled.
    s->discarded_ += len;
    if (s->discarded_ <= kRefusedDiscard) {
      nghttp2_session_consume(h->session_, id, len);
    } else {
      nghttp2_session_consume_connection(h->session_, len);
      if (s->discarded_ - len <= kRefusedDiscard) {
        nghttp2_submit_rst_stream(h->session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
      }
    }
    return 0;
  }
  if (s->bodyBytes_ > h->reactor_.config().limits.maxBodyBytes) {
    if (!s->exchange_->headersSent()) {
      h->refuse(*s, 413);
    } else {
      nghttp2_submit_rst_stream(h->session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    nghttp2_session_consume_connection(h->session_, len);
    return 0;
  }
  std::shared_ptr<Exchange> ex = s->exchange_;
  if (s->told_ && s->handler_->takesBody() && ex->listener()) {
    ex->listener()->onBody({reinterpret_cast<const char*>(data), len});
  }
  // (The handler may have ended the stream: look it up again.)
  s = h->stream(id);
  if (s && s->paused_) {
    s->unacked_ += len;
  } else if (s) {
    nghttp2_session_consume(h->session_, id, len);
  } else {
    nghttp2_session_consume_connection(h->session_, len);
  }
  return 0;
}

int Http2Session::onStreamClose(nghttp2_session*, int32_t id, uint32_t, void* self) {
  auto* h = static_cast<Http2Session*>(self);
  auto it = h->streams_.find(id);
  if (it == h->streams_.end()) return 0;
  std::unique_ptr<Stream> s = std::move(it->second);
  h->streams_.erase(it);
  if (h->lastStream_ == s.get()) h->lastStream_ = nullptr;
  s->release();
  h->lastActiveMs_ = h->reactor_.nowMs();
  return 0;
}

void Http2Session::dispatch(Stream& s) {
  s.dispatched_ = true;
  if (reactor_.context().observing()) s.startUs_ = monotonicMicros();
  s.exchange_ = std::allocate_shared<Exchange>(block_pool::Allocator<Exchange>(), &s);
  int status = 0;
  if (!s.finishHead(status)) {
    s.exchange_->setHead(s.request_.method == "HEAD");
    refuse(s, status);
    return;
  }
  s.exchange_->setHead(s.request_.isHead);
  s.handler_ = listenerHandler_ ? listenerHandler_ : reactor_.context().router().route(s.request_, s.table_);
  if (s.request_.expectContinue && !s.remoteEnded_ && !s.handler_->answersContinue()) s.exchange_->writeContinue();
  if (s.handler_->takesBody()) {
    s.told_ = true;
    s.request_.bodyless = s.remoteEnded_;
    std::shared_ptr<Exchange> ex = s.exchange_;  // the handler may end the stream
    s.handler_->onRequest(s.request_, ex);
  }
  if (s.remoteEnded_) bodyEnd(s);
}

void Http2Session::bodyEnd(Stream& s) {
  if (!s.exchange_ || !s.handler_) return;
  std::shared_ptr<Exchange> ex = s.exchange_;
  if (!s.told_) {
    s.told_ = true;
    s.handler_->onRequest(s.request_, ex);
  } else if (ex->listener()) {
    ex->listener()->onBodyEnd();
  }
}

void Http2Session::refuse(Stream& s, int status) {
  std::shared_ptr<Exchange> ex = s.exchange_;
  s.refused_ = true;
  s.bodyCut_ = s.told_ && !s.remoteEnded_;
  ex->writeError(status);
}

void Http2Session::goaway(uint32_t error) {
  if (goawaySent_) return;
  goawaySent_ = true;
  // GOAWAY with the last stream taken; nghttp2 ignores newer ones, and the
  // session ends once it is sent (and, for NO_ERROR, the open streams end).
  if (error == NGHTTP2_NO_ERROR) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
  } else {
    nghttp2_session_terminate_session(session_, error);
  }
  pump();
}

void Http2Session::onData(const char* data, size_t len) {
  lastProgressMs_ = reactor_.nowMs();
  inRecv_ = true;
  ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  inRecv_ = false;
  if (n < 0) {
    // A fatal error (a bad preface, a callback's failure, a flood of frames
    // that each want an answer): nghttp2 sends nothing more; a GOAWAY says
    // why (ENHANCE_YOUR_CALM for a flood, else PROTOCOL_ERROR), then the close.
    if (!goawaySent_) {
      goawaySent_ = true;
      uint32_t last = uint32_t(std::max(0, nghttp2_session_get_last_proc_stream_id(session_)));
      uint32_t error = n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR;
      char frame[17] = {0, 0, 8, 7, 0, 0, 0, 0, 0};  // GOAWAY, 8 bytes, stream 0
      for (int i = 0; i < 4; ++i) {
        frame[9 + i] = char((last >> (24 - 8 * i)) & 0xff);
        frame[13 + i] = char((error >> (24 - 8 * i)) & 0xff);
      }
      transport_.output().buffer().append(frame, sizeof(frame));
      transport_.flush();
    }
    transport_.closeAfterOutput();
    return;
  }
  // A connection that began as the reactor was draining (accepted as its
  // listener closed): the streams it has opened are answered, then GOAWAY.
  if (reactor_.draining() && !goawaySent_ && nghttp2_session_get_last_proc_stream_id(session_) > 0) {
    onShutdown();
    return;
  }
  pump();
}

void Http2Session::pump() {
  if (inRecv_ || inPump_) {
    pumpWanted_ = true;
    return;
  }
  inPump_ = true;
  do {
    pumpWanted_ = false;
    sendFrames();
    if (drainDue_) {
      drainDue_ = false;
      tellDrained();
    }
  } while (pumpWanted_ && transport_.state() == Transport::State::kOpen);
  inPump_ = false;
}

void Http2Session::tellDrained() {
  constexpr size_t kLowWater = 32 * 1024;
  std::vector<std::shared_ptr<Exchange>> ready;
  for (auto& [id, s] : streams_) {
    if (!s->exchange_ || !s->exchange_->waitingDrain) continue;
    if (s->pendingBytes(*s->exchange_) >= kLowWater) continue;
    s->exchange_->waitingDrain = false;
    ready.push_back(s->exchange_);
  }
  for (auto& ex : ready) {
    if (ex->valid() && ex->listener()) ex->listener()->onDrain();
  }
}

void Http2Session::sendFrames() {
  if (transport_.state() != Transport::State::kOpen) return;
  readAhead().file.reset();  // nothing read ahead outlives a batch (one is cut short on an error)
  while (transport_.pendingBytes() < kSendHighWater) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      transport_.close();
      return;
    }
    if (n == 0) break;
    lastProgressMs_ = reactor_.nowMs();
    transport_.output().buffer().append(reinterpret_cast<const char*>(data), size_t(n));
  }
  readAhead().file.reset();  // the batch is over
  transport_.flush();
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    transport_.closeAfterOutput();
  }
}

void Http2Session::onDrained() { pump(); }

void Http2Session::onEof() {
  // The client closed: nothing more can arrive, and no answer can be read.
  transport_.close();
}

void Http2Session::onTick(uint64_t nowMs) {
  const Timeouts& t = reactor_.config().timeouts;
  if (settingsAckDueMs_ && nowMs >= settingsAckDueMs_ && !goawaySent_) {
    goaway(NGHTTP2_SETTINGS_TIMEOUT);
    transport_.closeAfterOutput();
    return;
  }
  if (!streams_.empty()) {
    lastActiveMs_ = nowMs;
    // Streams open and nothing moving either way (a client that never opens
    // its window, or never finishes a request): the connection goes.
    if (nowMs - lastProgressMs_ >= std::max(t.sendMs, t.bodyMs)) transport_.close();
    return;
  }
  if (nowMs - lastActiveMs_ >= t.idleMs) {
    goaway(NGHTTP2_NO_ERROR);
    transport_.closeAfterOutput();
  }
}

bool Http2Session::fresh() const { return nghttp2_session_get_last_proc_stream_id(session_) <= 0; }

void Http2Session::onShutdown() {
  // A graceful stop: GOAWAY with the last stream taken; those finish.
  goaway(NGHTTP2_NO_ERROR);
  if (streams_.empty()) transport_.closeAfterOutput();
}

void Http2Session::onClose() {
  StreamMap streams;
  streams.swap(streams_);
  lastStream_ = nullptr;
  for (auto& [id, s] : streams) s->release();
}

}  // namespace kuai::server
