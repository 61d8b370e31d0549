// Reading a secret (an SMTP AUTH password, the probe key) from a file: the one place that
// decides which files are trusted to hold one. Thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace mailpulse {

inline constexpr std::size_t kMaxSecretLength = 4096;

// The secret held by `path`: its one line, without the trailing CR/LF. Refuses a file that
// cannot be opened, is not a regular file, that group or others may read ("readable by others;
// chmod 600 it"), that is empty, longer than kMaxSecretLength bytes, or holds more than one
// line (or a NUL). `what` names the file in errors ("password file", "key file"); errors name
// the path, never the contents.
StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what);

}  // namespace mailpulse
