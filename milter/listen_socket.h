// TCP_NODELAY on the milter's inet listener: libmilter creates the socket (smfi_opensocket) and
// never sets the option, and Nagle plus delayed ACK then stalls Postfix about 40 ms on every
// header edit. The unix socket's mode and group and the privilege drop are in
// shared/net/privileges.h.
#pragma once

#include <cstdint>

#include "shared/status.h"

namespace mailpulse {

// Sets TCP_NODELAY on this process's listening TCP sockets bound to `port`. Linux copies the
// option to every accepted connection, which is how it reaches libmilter's sockets.
Status SetNoDelayOnListeners(std::uint16_t port);

}  // namespace mailpulse
