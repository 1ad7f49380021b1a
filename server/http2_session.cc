#include "server/http2_session.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "server/block_pool.h"
#include "server/http2_stream.h"
#include "server/metrics.h"
#include "server/reactor.h"
#include "server/router.h"
#include "server/thread_context.h"

namespace kuai::server {

namespace {

constexpr uint32_t kMaxConcurrentStreams = 100;
constexpr int32_t kStreamWindow = 1 << 20;       // 1 MiB per stream
constexpr int32_t kConnectionWindow = 16 << 20;  // 16 MiB per connection
constexpr double kResetBurst = 1000;
constexpr double kResetRate = 33;  // per second

}  // namespace

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
                                       int64_t(http2::kFileChunk)});
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
    if (s->discarded_ <= http2::kRefusedDiscard) {
      nghttp2_session_consume(h->session_, id, len);
    } else {
      nghttp2_session_consume_connection(h->session_, len);
      if (s->discarded_ - len <= http2::kRefusedDiscard) {
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
  http2::dropReadAhead();  // nothing read ahead outlives a batch (one is cut short on an error)
  while (transport_.pendingBytes() < http2::kSendHighWater) {
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
  http2::dropReadAhead();  // the batch is over
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
