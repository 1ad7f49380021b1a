#include "server/block_pool.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define KUAI_BLOCK_POOL_KEEPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KUAI_BLOCK_POOL_KEEPS 0
#endif
#endif
#ifndef KUAI_BLOCK_POOL_KEEPS
#define KUAI_BLOCK_POOL_KEEPS 1
#endif

namespace kuai::server::block_pool {

namespace {

constexpr size_t kHeader = 16;  // keeps the caller's block 16-byte aligned
constexpr int kClasses = 7;      // 64, 128, ... 4096 bytes, header included
constexpr size_t kMinBlock = 64;
constexpr size_t kMaxBlock = kMinBlock << (kClasses - 1);
constexpr uint32_t kLarge = 0xff;  // from malloc, straight back to it
// At most this many bytes wait on one class's list (3.5 MiB a thread in all).
constexpr size_t kMaxBytesPerClass = KUAI_BLOCK_POOL_KEEPS ? 512 * 1024 : 0;

struct Header {
  uint32_t cls;
  uint32_t magic;  // catches a pointer that never came from here
  uint64_t usable;
};
static_assert(sizeof(Header) == kHeader);
constexpr uint32_t kMagic = 0x6b756169;  // "kuai"

struct FreeBlock {
  FreeBlock* next;
};

// Set once this thread's lists are gone (its thread_locals are being
// destroyed): blocks freed after that go straight back to malloc.
thread_local bool tListsGone = false;

struct Lists {
  FreeBlock* head[kClasses] = {};
  uint32_t count[kClasses] = {};
  ~Lists() {
    tListsGone = true;
    for (int c = 0; c < kClasses; ++c) {
      while (head[c]) {
        FreeBlock* b = head[c];
        head[c] = b->next;
        std::free(b);
      }
    }
  }
};

Lists& lists() {
  static thread_local Lists l;
  return l;
}

int classFor(size_t total) {
  if (total > kMaxBlock) return -1;
  int c = 0;
  size_t size = kMinBlock;
  while (size < total) {
    size <<= 1;
    ++c;
  }
  return c;
}

Header* headerOf(void* p) {
  Header* h = reinterpret_cast<Header*>(static_cast<char*>(p) - kHeader);
  if (h->magic != kMagic) std::abort();
  return h;
}

}  // namespace

void* allocate(size_t n) {
  if (n > SIZE_MAX - kHeader) return nullptr;
  size_t total = n + kHeader;
  int c = classFor(total);
  void* raw;
  if (c < 0) {
    raw = std::malloc(total);
    if (!raw) return nullptr;
    *static_cast<Header*>(raw) = Header{kLarge, kMagic, n};
  } else {
    Lists* l = tListsGone ? nullptr : &lists();
    if (l && l->head[c]) {
      FreeBlock* b = l->head[c];
      l->head[c] = b->next;
      --l->count[c];
      raw = b;
    } else {
      raw = std::malloc(kMinBlock << c);
      if (!raw) return nullptr;
    }
    *static_cast<Header*>(raw) = Header{uint32_t(c), kMagic, (kMinBlock << c) - kHeader};
  }
  return static_cast<char*>(raw) + kHeader;
}

void release(void* p) {
  if (!p) return;
  Header* h = headerOf(p);
  uint32_t c = h->cls;
  h->magic = 0;
  if (c != kLarge && !tListsGone) {
    Lists& l = lists();
    if (l.count[c] < (kMaxBytesPerClass >> 6 >> c)) {
      FreeBlock* b = reinterpret_cast<FreeBlock*>(h);
      b->next = l.head[c];
      l.head[c] = b;
      ++l.count[c];
      return;
    }
  }
  std::free(h);
}

void* reallocate(void* p, size_t n) {
  if (!p) return allocate(n);
  if (n == 0) {
    release(p);
    return nullptr;
  }
  Header* h = headerOf(p);
  if (n <= h->usable) return p;
  void* q = allocate(n);
  if (!q) return nullptr;
  std::memcpy(q, p, h->usable);
  release(p);
  return q;
}

size_t cachedBlocks() {
  if (tListsGone) return 0;
  size_t n = 0;
  for (uint32_t c : lists().count) n += c;
  return n;
}

nghttp2_mem* nghttp2Allocator() {
  static nghttp2_mem mem = {
      nullptr,
      [](size_t n, void*) { return allocate(n); },
      [](void* p, void*) { release(p); },
      [](size_t count, size_t size, void*) -> void* {
        if (size && count > SIZE_MAX / size) return nullptr;
        void* p = allocate(count * size);
        if (p) std::memset(p, 0, count * size);
        return p;
      },
      [](void* p, size_t n, void*) { return reallocate(p, n); },
  };
  return &mem;
}

}  // namespace kuai::server::block_pool
