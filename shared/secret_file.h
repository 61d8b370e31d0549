// Secrets kept in files — AUTH passwords, the probe key, the event socket token — read with the
// same rules everywhere: a regular file that neither group nor others may read, one line (the
// trailing CR/LF removed), at most 4096 bytes, not empty. Errors name the file and what it is
// ("password file /etc/mailpulse/probe.pw is readable by others; chmod 600 it"), never its
// contents. Thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace mailpulse {

inline constexpr std::size_t kMaxSecretLength = 4096;

// `what` names the kind of file in errors: "password file", "key file", "token file".
StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what);

// The same rules for a secret that another library reads (a TLS private key): the file exists,
// is a regular file, and neither group nor others may read it.
Status CheckPrivateFile(const std::string& path, std::string_view what);

}  // namespace mailpulse
