#include "server/mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace kuai::server {

Mailbox::Mailbox() { fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

Mailbox::~Mailbox() {
  if (fd_ >= 0) ::close(fd_);
}

void Mailbox::send(ReactorMessage message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(message));
    pending_.store(true, std::memory_order_release);
  }
  uint64_t one = 1;
  ssize_t n = ::write(fd_, &one, sizeof(one));
  (void)n;  // EAGAIN: the counter is full, the reactor is awake anyway
}

std::vector<ReactorMessage> Mailbox::take() {
  std::vector<ReactorMessage> out;
  std::lock_guard<std::mutex> lock(mutex_);
  out.swap(queue_);
  pending_.store(false, std::memory_order_relaxed);
  return out;
}

}  // namespace kuai::server
