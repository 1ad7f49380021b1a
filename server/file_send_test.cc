// sendFileRange over a real socket pair, each way a file leaves (sendfile to a
// peer elsewhere; to a peer on this machine, a copy from the file's mapping or,
// without one, through a buffer): bytes intact, a range at an odd offset, and
// a file truncated while it is being sent (EIO, never a signal).
#include "server/file_send.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "server/output_queue.h"
#include "server/static_files.h"

namespace kuai::server {
namespace {

class FileSendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/kuai-file-send-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    path_ = path;
    data_.resize(3 * 1024 * 1024 + 17);
    uint32_t x = 12345;
    for (char& c : data_) {
      x = x * 1103515245 + 12345;
      c = char(x >> 24);
    }
    ASSERT_EQ(::write(fd, data_.data(), data_.size()), ssize_t(data_.size()));
    file_ = std::make_shared<OpenFile>();
    file_->fd = fd;
    file_->size = data_.size();
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, socks_), 0);
  }
  void TearDown() override {
    ::close(socks_[0]);
    ::close(socks_[1]);
    ::unlink(path_.c_str());
  }

  // Sends [offset, offset + length) through sendFileRange, reading the other
  // end as it goes; returns what arrived.
  std::string transfer(uint64_t offset, uint64_t length, bool local) {
    OutputQueue out;
    out.appendFile(file_, offset, length);
    std::string got;
    char buf[65536];
    while (!out.empty()) {
      ssize_t n = sendFileRange(socks_[0], out, local);
      if (n < 0) {
        int err = errno;
        EXPECT_EQ(err, EAGAIN) << std::strerror(err);
        if (err != EAGAIN) break;
      }
      ssize_t r;
      while ((r = ::read(socks_[1], buf, sizeof buf)) > 0) got.append(buf, size_t(r));
    }
    ssize_t r;
    while ((r = ::read(socks_[1], buf, sizeof buf)) > 0) got.append(buf, size_t(r));
    return got;
  }

  std::string path_;
  std::string data_;
  std::shared_ptr<OpenFile> file_;
  int socks_[2] = {-1, -1};
};

// How a file leaves: to a peer elsewhere (sendfile), or to one on this
// machine from the mapping or through a buffer.
enum class Way { kSendfile, kMapping, kBuffer };

class FileSendWays : public FileSendTest, public ::testing::WithParamInterface<Way> {
 protected:
  void SetUp() override {
    FileSendTest::SetUp();
    if (GetParam() == Way::kMapping) {
      file_->mapWhole();
      ASSERT_NE(file_->map, nullptr);
    }
  }
  bool local() const { return GetParam() != Way::kSendfile; }
};

TEST_P(FileSendWays, WholeFile) {
  EXPECT_TRUE(transfer(0, data_.size(), local()) == data_);
}

TEST_P(FileSendWays, RangeAtAnOddOffset) {
  EXPECT_TRUE(transfer(1000001, 1500000, local()) == data_.substr(1000001, 1500000));
}

// The file shrinks while it is being sent: EIO (from the mapping the kernel's
// copy fails with EFAULT, where a read in user space would have died of
// SIGBUS); what was copied before is the file's bytes.
TEST_P(FileSendWays, TruncatedWhileSendingIsEio) {
  OutputQueue out;
  out.appendFile(file_, 0, data_.size());
  ssize_t first = sendFileRange(socks_[0], out, local());
  ASSERT_GT(first, 0);
  ASSERT_LT(size_t(first), data_.size());  // the socket buffer is smaller than the file
  ASSERT_EQ(::ftruncate(file_->fd, 4096), 0);
  std::string got;
  char buf[65536];
  ssize_t n = 0;
  for (int i = 0; i < 1000; ++i) {
    ssize_t r;
    while ((r = ::read(socks_[1], buf, sizeof buf)) > 0) got.append(buf, size_t(r));
    n = sendFileRange(socks_[0], out, local());
    if (n < 0 && errno != EAGAIN) break;
  }
  EXPECT_EQ(n, -1);
  EXPECT_EQ(errno, EIO);
  // (sendfile's pages are the page cache's own: bytes still queued when the
  // file was cut are whatever those pages hold by then.)
  if (GetParam() != Way::kSendfile) {
    EXPECT_TRUE(data_.compare(0, got.size(), got) == 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Ways, FileSendWays, ::testing::Values(Way::kSendfile, Way::kMapping, Way::kBuffer),
                         [](const ::testing::TestParamInfo<Way>& info) {
                           switch (info.param) {
                             case Way::kSendfile: return "Sendfile";
                             case Way::kMapping: return "Mapping";
                             case Way::kBuffer: return "Buffer";
                           }
                           return "";
                         });

TEST_F(FileSendTest, EmptyFileHasNoMapping) {
  auto empty = std::make_shared<OpenFile>();
  empty->fd = ::dup(file_->fd);
  empty->size = 0;
  empty->mapWhole();
  EXPECT_EQ(empty->map, nullptr);
}

}  // namespace
}  // namespace kuai::server
