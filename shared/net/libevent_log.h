// libevent (and evdns) write their own warnings ("[warn] Nameserver 192.0.2.53:53 has failed")
// straight to stderr by default, bypassing the daemon's logging and syslog. This routes them
// through the logging facade instead, at the matching level, prefixed "libevent:".
// Call once at start-up, after LogInit. Thread-safe afterwards.
#pragma once

namespace mailpulse {

void RouteLibeventLogs();

}  // namespace mailpulse
