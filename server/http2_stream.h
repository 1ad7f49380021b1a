// Http2Session::Stream, one stream of an HTTP/2 connection: the request as
// its fields arrive (finishHead makes the parser::Request), the Exchange
// answering it (the stream is its sink), and the response body waiting for
// the stream's window, handed to nghttp2 as DATA frames (read, sendData).
// Internal to http2_session.cc and http2_stream.cc.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/block_pool.h"
#include "server/exchange.h"
#include "server/http2_session.h"
#include "server/static_files.h"

namespace kuai::server {

namespace http2 {

constexpr size_t kSendHighWater = 256 * 1024;  // stop producing frames above this much unsent output
constexpr size_t kFileChunk = 64 * 1024;
// What a refused stream's client may still upload (read and dropped) before
// the stream is cancelled.
constexpr uint64_t kRefusedDiscard = 8 << 20;

// Forgets the file bytes the thread read ahead for a sendFrames() batch:
// nothing read ahead outlives a batch.
void dropReadAhead();

}  // namespace http2

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
  ~Stream() override;
  void sendBody(Exchange&, std::string_view bytes) override;
  void sendBodyHeld(Exchange& ex, std::string_view bytes, const std::shared_ptr<const void>& hold) override {
    if (!held_.bytes.empty() || bodyAt_ < body_.size() || !files_.empty()) return sendBody(ex, bytes);
    held_ = {bytes, hold};  // sent from where it lies, no copy
    resume();
  }
  void sendFile(Exchange&, std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) override {
    files_.push_back({std::move(file), offset, length, {}});
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
    for (const auto& f : files_) files += f.file ? size_t(f.length) : f.bytes.size();
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
  std::string localAddress(int& port) override { return session_.transport_.localAddress(port); }
  bool encrypted() const override { return session_.transport_.isTls(); }
  const tls::TlsSession* tlsSession() const override { return session_.transport_.tls(); }
  uint64_t connectionId() const override { return session_.transport_.id(); }
  void connectionBytes(uint64_t& read, uint64_t& written) const override {
    read = session_.transport_.bytesRead();
    written = session_.transport_.bytesWritten();
  }

  // The stream is gone: the exchange is cut loose, its handler told of an
  // abort unless the whole response went out.
  void release();
  // Metrics and the access log, once per stream that got a response head.
  void account();

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
  uint8_t pseudoOrder_ = 0;  // as parser::Request::pseudoOrder
  uint8_t pseudoCount_ = 0;
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
    std::string bytes;  // no file: bytes written after an earlier range (their place in the body)
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

}  // namespace kuai::server
