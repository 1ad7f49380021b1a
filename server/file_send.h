// Sending a file range to a socket, shared by the I/O backends.
//
// sendfile(2) first: no copy, and a response that fits in the socket buffer
// (a 1 MiB file on a warmed-up connection) leaves in one call. A range that
// outgrows the buffer (the call stopped short with EAGAIN once) goes on as a
// streamed transfer through a copy (pread into a per-thread buffer, then
// send): page-cache pages handed to the socket one by one make the receiving
// side's work per byte about a third larger on loopback (measured with wrk
// on 100 MiB files: ~95 ms of client CPU per file with sendfile, ~62 ms with
// the copy), which is what limits a long download when the client shares
// the machine; the copy costs the server one memcpy per byte.
#pragma once

#include <sys/types.h>

#include "server/output_queue.h"

namespace kuai::server {

// Sends what the socket takes of `seg` (a file range) without blocking and
// consumes it from `out`; returns the bytes sent, or -1 with errno (EAGAIN:
// the socket is full; EIO: the file shrank under us).
ssize_t sendFileRange(int sock, OutputQueue& out);

}  // namespace kuai::server
