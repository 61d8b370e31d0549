// Setting up the milter's listening socket around libmilter, and leaving root afterwards.
// libmilter creates the socket (smfi_opensocket); this glue fixes what it does not do:
// the unix socket's mode and group (libmilter leaves it to the umask, and a 0755 socket
// locks Postfix out), TCP_NODELAY on inet sockets (libmilter never sets it; Nagle plus delayed
// ACK then stalls Postfix about 40 ms on every header edit), and the switch to an
// unprivileged user once every socket is bound.
#pragma once

#include <sys/types.h>

#include <string>

#include "shared/endpoint.h"
#include "shared/status.h"

namespace mailpulse {

struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;
};

// Looks up the user (and its primary group) to run as.
StatusOr<RunAs> LookUpUser(const std::string& user);
// Looks up a group by name.
StatusOr<gid_t> LookUpGroup(const std::string& group);

// Creates the socket's directory if missing (mode 0755) and removes a stale socket file.
Status PrepareUnixSocketPath(const std::string& path);

// chmod 0660 and chown to owner:group, so the MTA (in `group`) may connect and nobody else.
Status SecureUnixSocket(const std::string& path, uid_t owner, gid_t group);

// Sets TCP_NODELAY on this process's listening TCP sockets bound to `port`. Linux copies the
// option to every accepted connection, which is how it reaches libmilter's sockets.
Status SetNoDelayOnListeners(std::uint16_t port);

// setgroups/setgid/setuid to `run_as`; verifies root cannot be regained.
Status DropPrivileges(const RunAs& run_as);

}  // namespace mailpulse
