// Sending a file range to a socket, shared by the I/O backends.
//
// To a peer on another machine: sendfile(2), no copy; the socket takes the
// page-cache pages as they are.
//
// To a peer on this machine (loopback, Unix socket): the receiver's work is
// this machine's CPU too, and receiving page-cache pages handed over one by
// one costs it about a fifth more per byte than a copied stream (1 MiB files,
// wrk on the other core: ~540 µs of client CPU a file with sendfile, ~440 µs
// copied). So the bytes are copied in, from the file's mapping
// (OpenFile::map) with send(2): one copy, made by the kernel, so a file
// truncated meanwhile makes it fail with EFAULT (reported as EIO), never a
// signal. Without a mapping: pread into a per-thread buffer, then send.
#pragma once

#include <sys/types.h>

#include "server/output_queue.h"

namespace kuai::server {

// Sends what the socket takes of `out`'s head (a file range) without blocking
// and consumes it from `out`; returns the bytes sent, or -1 with errno (EAGAIN:
// the socket is full; EIO: the file shrank under us).
ssize_t sendFileRange(int sock, OutputQueue& out, bool peerOnThisMachine);

}  // namespace kuai::server
