#include "server/memory_reactor.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace kuai::server {

MemoryReactor::MemoryReactor(const ServerConfig& config) : Reactor(0, config) {}

MemoryReactor::~MemoryReactor() { teardown(); }

Listener* MemoryReactor::listen(Handler* handler) {
  auto l = std::make_unique<Listener>();
  l->fd = -1;
  l->handler = handler;
  l->armed = true;
  Listener* raw = l.get();
  listeners_.push_back(std::move(l));
  return raw;
}

uint64_t MemoryReactor::accept(Listener* l) {
  if (!l) l = listeners_.empty() ? listen() : listeners_.front().get();
  Transport* t = addConnection(-1, l);
  Peer& p = peers_[t->id()];
  p.transport = t;
  turn();
  return t->id();
}

MemoryReactor::Peer* MemoryReactor::peer(uint64_t conn) {
  auto it = peers_.find(conn);
  return it == peers_.end() ? nullptr : &it->second;
}

MemoryReactor::Peer* MemoryReactor::peerOf(Transport* c) {
  // Outbound transports have no client here (and ids of their own).
  return c->outbound() ? nullptr : peer(c->id());
}

const MemoryReactor::Peer* MemoryReactor::peer(uint64_t conn) const {
  auto it = peers_.find(conn);
  return it == peers_.end() ? nullptr : &it->second;
}

void MemoryReactor::send(uint64_t conn, std::string_view bytes) {
  Peer* p = peer(conn);
  // A paused reader leaves the bytes in the socket buffer, to be handed over
  // once reading resumes (turn()).
  if (p && !p->closed) p->inbox.append(bytes);
  turn();
}

void MemoryReactor::shutdown(uint64_t conn) {
  if (Peer* p = peer(conn)) p->eof = true;
  turn();
}

void MemoryReactor::setWindow(uint64_t conn, size_t bytes) {
  if (Peer* p = peer(conn)) p->window = bytes;
  turn();
}

void MemoryReactor::grant(uint64_t conn, size_t bytes) {
  Peer* p = peer(conn);
  if (!p) return;
  p->window = bytes > SIZE_MAX - p->window ? SIZE_MAX : p->window + bytes;
  if (p->transport && !p->closed) markDirty(p->transport);
  turn();
}

const std::string& MemoryReactor::received(uint64_t conn) const {
  static const std::string kNone;
  const Peer* p = peer(conn);
  return p ? p->received : kNone;
}

std::string MemoryReactor::take(uint64_t conn) {
  Peer* p = peer(conn);
  if (!p) return {};
  std::string out;
  out.swap(p->received);
  return out;
}

bool MemoryReactor::closed(uint64_t conn) const {
  const Peer* p = peer(conn);
  return !p || p->closed;
}

bool MemoryReactor::writeShut(uint64_t conn) const {
  const Peer* p = peer(conn);
  return !p || p->writeShut || p->closed;
}

bool MemoryReactor::reading(uint64_t conn) const {
  const Peer* p = peer(conn);
  return p && !p->closed && !p->readPaused;
}

size_t MemoryReactor::openConnections() const {
  size_t n = 0;
  for (const auto& [id, p] : peers_) n += !p.closed;
  return n;
}

void MemoryReactor::advance(uint64_t ms) {
  // Step by ticks, as a real reactor would see them.
  for (uint64_t done = 0; done < ms;) {
    uint64_t step = std::min<uint64_t>(kTickMs, ms - done);
    nowMs_ += step;
    done += step;
    turn();
  }
}

void MemoryReactor::turn() {
  tick();
  // Deferred work may defer more (a refused connect tried again, its answer
  // flushed): run it all, as a real reactor's next wake-ups would.
  do {
    flushDirty();
    runLater();
  } while (hasDeferredWork() || deliver());
  for (Transport* c : graveyard_) destroyTransport(c);
  graveyard_.clear();
}

bool MemoryReactor::deliver() {
  bool any = false;
  for (auto& [id, p] : peers_) {
    if (!p.transport || p.closed || p.readPaused) continue;
    if (!p.inbox.empty()) {
      std::string bytes;
      bytes.swap(p.inbox);
      p.transport->onData(bytes.data(), bytes.size());
      any = true;
    } else if (p.eof && !p.eofSent) {
      p.eofSent = true;
      p.transport->onEof();
      any = true;
    }
    if (any) return true;  // `peers_` may have changed
  }
  return false;
}

void MemoryReactor::flush(Transport* c) {
  Peer* p = peerOf(c);
  if (!p) return;
  c->fillWire();
  if (c->closed()) return;
  OutputQueue& out = c->wire();
  while (!out.empty() && p->window > 0) {
    OutputQueue::Segment& seg = out.head();
    size_t n;
    if (seg.isFile()) {
      n = size_t(std::min<uint64_t>({seg.remaining, uint64_t(p->window), 64 * 1024}));
      std::string chunk(n, '\0');
      ssize_t got = ::pread(seg.file->fd, chunk.data(), n, off_t(seg.offset));
      if (got <= 0) {
        c->onError(-EIO);
        return;
      }
      n = size_t(got);
      p->received.append(chunk.data(), n);
    } else {
      std::string_view m = out.headMemory();
      n = std::min(m.size(), p->window);
      p->received.append(m.data(), n);
    }
    out.consume(n);
    if (p->window != SIZE_MAX) p->window -= n;
    if (out.empty()) c->fillWire();
  }
  if (out.empty() && c->output().empty()) c->onDrained();
}

void MemoryReactor::release(Transport* c) {
  if (Peer* p = peerOf(c)) {
    p->closed = true;
    p->transport = nullptr;
  }
  graveyard_.push_back(c);
}

void MemoryReactor::setReading(Transport* c, bool on) {
  if (Peer* p = peerOf(c)) p->readPaused = !on;
}

void MemoryReactor::startConnect(Transport* c) {
  // No network here: every outbound connection is refused (a proxy route's
  // 502 path).
  later(
      [](void* t) {
        auto* transport = static_cast<Transport*>(t);
        transport->onConnect(-ECONNREFUSED);
      },
      c);
}

void MemoryReactor::shutdownWrite(Transport* c) {
  if (Peer* p = peerOf(c)) p->writeShut = true;
}

}  // namespace kuai::server
