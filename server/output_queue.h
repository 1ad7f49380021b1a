// OutputQueue: the bytes a connection still has to send, in order: memory
// segments and file ranges (sent with sendfile). Owned by one Connection, used on
// its reactor thread. While the backend has the head segment in flight (an
// io_uring send), new output goes to a fresh segment so the in-flight bytes never
// move.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/static_files.h"

namespace kuai::server {

class OutputQueue {
 public:
  struct Segment {
    std::string data;  // memory bytes; [pos, size) still to send
    size_t pos = 0;
    std::shared_ptr<OpenFile> file;  // or a file range
    uint64_t offset = 0;
    uint64_t remaining = 0;
    bool isFile() const { return file != nullptr; }
  };

  // The memory buffer to append output to.
  std::string& buffer() {
    if (segs_.empty() || segs_.back().isFile() || (headFrozen_ && segs_.size() == 1)) {
      segs_.emplace_back();
      if (!spare_.empty() || spare_.capacity()) segs_.back().data.swap(spare_);
    }
    return segs_.back().data;
  }

  void appendFile(std::shared_ptr<OpenFile> file, uint64_t offset, uint64_t length) {
    if (length == 0) return;
    Segment s;
    s.file = std::move(file);
    s.offset = offset;
    s.remaining = length;
    segs_.push_back(std::move(s));
  }

  bool empty() const { return segs_.empty(); }
  // Bytes still to send (memory and file ranges).
  size_t bytes() const {
    size_t n = 0;
    for (const Segment& s : segs_) n += s.isFile() ? size_t(s.remaining) : s.data.size() - s.pos;
    return n;
  }
  Segment& head() { return segs_.front(); }
  // The segment after the head is a file range.
  bool nextIsFile() const { return segs_.size() > 1 && segs_[1].isFile(); }
  std::string_view headMemory() const {
    const Segment& s = segs_.front();
    return std::string_view(s.data).substr(s.pos);
  }

  // Marks the head as in flight (its bytes must not move) or no longer.
  void freezeHead(bool frozen) { headFrozen_ = frozen; }
  bool headFrozen() const { return headFrozen_; }

  // `n` bytes of the head were sent.
  void consume(size_t n) {
    consumed_ += n;
    Segment& s = segs_.front();
    if (s.isFile()) {
      s.offset += n;
      s.remaining -= n;
      if (s.remaining == 0) popHead();
      return;
    }
    s.pos += n;
    if (s.pos >= s.data.size()) popHead();
  }

  // Bytes sent (consumed) since the queue was made.
  uint64_t consumed() const { return consumed_; }

  // Drops everything (connection closing).
  void clear() {
    segs_.clear();
    headFrozen_ = false;
  }

 private:
  void popHead() {
    Segment& s = segs_.front();
    if (!s.isFile() && s.data.capacity() <= kKeepCapacity) {
      s.data.clear();
      spare_.swap(s.data);
    }
    segs_.erase(segs_.begin());
    headFrozen_ = false;
  }

  // A buffer up to this size is kept for the next response; bigger ones (a large
  // pipelined batch) go back to the allocator so idle connections stay small.
  static constexpr size_t kKeepCapacity = 16 * 1024;

  std::vector<Segment> segs_;
  std::string spare_;
  uint64_t consumed_ = 0;
  bool headFrozen_ = false;
};

}  // namespace kuai::server
