// systemd's service notification protocol (sd_notify(3)), spoken directly:
// a datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
// abstract name starting with '@'). kuai sends READY=1 once every listener
// is open, RELOADING=1 / READY=1 around a SIGHUP reload and STOPPING=1 when
// a stop begins, so a Type=notify unit knows when it serves. No-op without
// $NOTIFY_SOCKET.
#pragma once

#include <string_view>

namespace kuai::server {

// Sends `state` ("READY=1\nSTATUS=..."); false when there is no socket or the
// send failed.
bool notifySystemd(std::string_view state);

}  // namespace kuai::server
