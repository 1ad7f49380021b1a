#include "server/block_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <thread>
#include <vector>

namespace kuai::server::block_pool {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kKeeps = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kKeeps = false;
#else
constexpr bool kKeeps = true;
#endif
#else
constexpr bool kKeeps = true;
#endif

TEST(BlockPool, FreedBlockIsReusedForTheSameClass) {
  void* a = allocate(100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 16, 0u);
  std::memset(a, 0xab, 100);
  size_t before = cachedBlocks();
  release(a);
  if (!kKeeps) GTEST_SKIP() << "nothing is kept under AddressSanitizer";
  EXPECT_EQ(cachedBlocks(), before + 1);
  void* b = allocate(90);  // the same 128-byte class
  EXPECT_EQ(a, b);
  EXPECT_EQ(cachedBlocks(), before);
  release(b);
}

TEST(BlockPool, LargeBlocksGoStraightBackToMalloc) {
  size_t before = cachedBlocks();
  void* a = allocate(100000);
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, 100000);
  release(a);
  EXPECT_EQ(cachedBlocks(), before);
}

TEST(BlockPool, ReallocateKeepsTheBytes) {
  char* p = static_cast<char*>(allocate(10));
  std::memcpy(p, "0123456789", 10);
  p = static_cast<char*>(reallocate(p, 40));  // fits the same block
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  p = static_cast<char*>(reallocate(p, 3000));  // a bigger class
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  std::memset(p + 10, 7, 2990);
  p = static_cast<char*>(reallocate(p, 50000));  // a malloc block
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  EXPECT_EQ(p[2999], 7);
  EXPECT_EQ(reallocate(p, 0), nullptr);
  void* q = reallocate(nullptr, 20);
  ASSERT_NE(q, nullptr);
  release(q);
  release(nullptr);
}

TEST(BlockPool, WhatWaitsIsBounded) {
  // Far more blocks than a list keeps: at most 512 KiB per class stays.
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) blocks.push_back(allocate(40));
  for (void* b : blocks) release(b);
  EXPECT_LE(cachedBlocks(), 512u * 1024 / 64 + 7 * 8192);
  if (kKeeps) {
    EXPECT_GE(cachedBlocks(), 512u * 1024 / 64);
  }
}

TEST(BlockPool, BlocksMayBeFreedOnAnotherThread) {
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(allocate(size_t(i % 4000) + 1));
  std::thread t([&] {
    for (void* b : blocks) release(b);
  });
  t.join();  // the other thread's lists were freed when it ended
  SUCCEED();
}

TEST(BlockPool, ServesStdContainersAndNghttp2) {
  std::map<int, int, std::less<int>, Allocator<std::pair<const int, int>>> m;
  for (int i = 0; i < 1000; ++i) m[i] = i * 2;
  EXPECT_EQ(m[500], 1000);
  nghttp2_mem* mem = nghttp2Allocator();
  auto* z = static_cast<unsigned char*>(mem->calloc(10, 30, mem->mem_user_data));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(z[i], 0);
  z = static_cast<unsigned char*>(mem->realloc(z, 600, mem->mem_user_data));
  mem->free(z, mem->mem_user_data);
  EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr);
  EXPECT_EQ(allocate(SIZE_MAX - 4), nullptr);
}

}  // namespace
}  // namespace kuai::server::block_pool
