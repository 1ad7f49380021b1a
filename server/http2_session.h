// Http2Session: HTTP/2 over one Transport (RFC 9113), the second protocol
// beside Http1Session, producing requests for the same handlers. nghttp2
// does the framing, HPACK, flow control and stream states, driven from the
// transport's bytes (nghttp2_session_mem_recv / mem_send: no thread or socket
// of its own). Each stream becomes a parser::Request routed once, when its
// header block is complete (the listener's handler, or the Router's), and an
// Exchange whose sink (the stream) turns the answer into HEADERS and DATA
// frames. Chosen per connection: ALPN "h2" on TLS, or the client's preface on
// a clear-text listener that accepts h2c (Http1Session hands over).
// Owned by its Transport; on the reactor's thread.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "server/block_pool.h"
#include "server/exchange.h"
#include "server/transport.h"

namespace kuai::server {

struct Listener;

class Http2Session final : public Protocol {
 public:
  Http2Session(Transport& transport, const Listener& listener);
  ~Http2Session() override;

  // Protocol.
  void onData(const char* data, size_t len) override;
  void onEof() override;
  void onDrained() override;
  void onTick(uint64_t nowMs) override;
  void onShutdown() override;
  bool idle() const override { return streams_.empty(); }
  bool fresh() const override;
  void onClose() override;

  // The connection preface a client sends first (RFC 9113 §3.4).
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

 private:
  class Stream;
  friend class Stream;

  // nghttp2 callbacks.
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onDataChunk(nghttp2_session*, uint8_t flags, int32_t streamId, const uint8_t* data, size_t len,
                         void* self);
  static int onStreamClose(nghttp2_session*, int32_t streamId, uint32_t errorCode, void* self);

  Stream* stream(int32_t id);
  void dispatch(Stream& s);     // the header block is complete: route it
  void bodyEnd(Stream& s);      // END_STREAM from the client
  // Sends what nghttp2 has to send (frames, the streams' data) while the
  // transport's queue is short; closes when the session is done.
  void pump();
  void sendFrames();   // pump's part inside nghttp2
  void tellDrained();  // onDrain to the writers with room again
  void refuse(Stream& s, int status);  // kuai's error page on one stream
  void goaway(uint32_t error);         // no new streams; close once done

  Transport& transport_;
  Reactor& reactor_;
  Handler* listenerHandler_;
  nghttp2_session* session_ = nullptr;
  using StreamMap = std::map<int32_t, std::unique_ptr<Stream>, std::less<int32_t>,
                             block_pool::Allocator<std::pair<const int32_t, std::unique_ptr<Stream>>>>;
  StreamMap streams_;
  Stream* lastStream_ = nullptr;  // stream()'s last answer
  bool inRecv_ = false;       // inside mem_recv: sending waits until it returns
  bool pumpWanted_ = false;
  bool inPump_ = false;
  bool drainDue_ = false;  // a waiting writer's body went out: tell it (tellDrained)
  bool goawaySent_ = false;
  uint64_t lastActiveMs_ = 0;   // a stream open or a frame in: the idle deadline's start
  uint64_t lastProgressMs_ = 0; // bytes in or out: a stalled connection's deadline
  // Our SETTINGS must be acknowledged within the header deadline (RFC 9113
  // 6.5.3), else GOAWAY SETTINGS_TIMEOUT; 0: acknowledged.
  uint64_t settingsAckDueMs_ = 0;
  // Streams the client resets (rapid reset, CVE-2023-44487): a bucket of
  // kResetBurst, refilled at kResetRate per second; empty: GOAWAY
  // ENHANCE_YOUR_CALM.
  double resetTokens_;
  uint64_t resetRefillMs_ = 0;
};

}  // namespace kuai::server
