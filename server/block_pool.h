// BlockPool: the reactor thread's free lists of small heap blocks, for the
// objects every HTTP/2 stream makes and drops again (nghttp2's own stream,
// header and frame allocations through nghttp2_mem, kuai's Stream). Under
// load a connection holds a hundred streams in flight, more than malloc's
// per-thread cache keeps per size, so each request went through malloc's
// shared bins; here a freed block waits on its thread's list for the next
// stream.
//
// Blocks come in power-of-two classes from 64 to 4096 bytes (a 16-byte
// header before each records its class); bigger ones go to malloc and back.
// A block may be freed on any thread (it joins that thread's lists). A
// class's list keeps at most 512 KiB of blocks; the rest go back to malloc,
// and a thread's lists are freed when it ends. Under AddressSanitizer nothing is
// kept, so a use after free is still caught.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <new>

namespace kuai::server::block_pool {

void* allocate(size_t n);
void release(void* p);
void* reallocate(void* p, size_t n);

// The pool as nghttp2's allocator (nghttp2_session_server_new3).
nghttp2_mem* nghttp2Allocator();

// Blocks now waiting on this thread's lists (for tests).
size_t cachedBlocks();

// For std containers and std::allocate_shared.
template <typename T>
struct Allocator {
  using value_type = T;
  Allocator() = default;
  template <typename U>
  Allocator(const Allocator<U>&) {}
  T* allocate(size_t n) {
    void* p = block_pool::allocate(n * sizeof(T));
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { block_pool::release(p); }
  template <typename U>
  bool operator==(const Allocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const Allocator<U>&) const { return false; }
};

}  // namespace kuai::server::block_pool
