// Running a daemon as root only as long as it must: look up the account to run as, prepare
// and secure a unix socket path (mode 0660, owner and group chosen by the caller), and switch
// to the unprivileged user once every socket is bound. Used by both daemons.
#pragma once

#include <sys/types.h>

#include <string>

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

// The account a daemon started as root switches to: `user`, or, when `user` is the built-in
// default and does not exist yet, "nobody" (so it runs out of the box, never as root).
// `*fell_back` tells the caller to warn. `key` names the setting in errors ("milter.user").
StatusOr<RunAs> ChooseRunAs(const std::string& user, const std::string& default_user,
                            const std::string& key, bool* fell_back);

// Creates the socket's directory if missing (mode 0755) and removes a stale socket file.
Status PrepareUnixSocketPath(const std::string& path);

// chmod 0660 and chown to owner:group, so peers in `group` may connect and nobody else.
Status SecureUnixSocket(const std::string& path, uid_t owner, gid_t group);

// setgroups/setgid/setuid to `run_as`; verifies root cannot be regained.
Status DropPrivileges(const RunAs& run_as);

}  // namespace mailpulse
