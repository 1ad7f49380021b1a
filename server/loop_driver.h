// LoopDriver: an event loop (libuv, the thread's Node environment) that a
// reactor drives on its own thread, beside its I/O: the reactor waits on the
// loop's fd and timeout too, and runs one turn of it when it is due. The seam
// through which the scripting layer runs inside a reactor without server/
// knowing anything of V8 or Node. On the reactor's thread.
#pragma once

namespace kuai::server {

class LoopDriver {
 public:
  virtual ~LoopDriver() = default;
  virtual int fd() const = 0;          // readable when the loop has I/O to handle
  virtual int timeoutMs() const = 0;   // until the loop's next timer; -1 none; 0 now
  virtual void runOnce() = 0;          // one non-blocking turn of the loop
  virtual bool alive() const = 0;      // the loop still has handles or requests
  // Runs `work` (the processing of one wake-up's completions) inside one scope
  // for calls into the loop's code: with JS, one callback scope per batch, so
  // next-ticks and promise jobs run once the batch is handled.
  virtual void runBatch(void (*work)(void*), void* arg) { work(arg); }
  // The reactor served a burst and has been quiet for a second: memory kept
  // for the next burst may go back.
  virtual void onQuiet() {}
};

}  // namespace kuai::server
