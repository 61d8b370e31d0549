// The logging facade: one formatted, escaped line per call, emitted with one syslog() or one
// write(2) so lines from concurrent libmilter threads never interleave.
#include "shared/logging.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

namespace mailpulse {
namespace {

constexpr std::size_t kMaxLine = 4096;
constexpr char kTruncated[] = "...";

// Written by LogInit before any thread starts; atomics keep later readers race-free even if
// an embedding program gets the order wrong.
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<LogTarget> g_target{LogTarget::kStderr};
// openlog() keeps the pointer, so the ident lives in storage owned here.
char g_ident[64] = "mailpulse";

const char* LevelWord(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return LOG_DEBUG;
    case LogLevel::kInfo:
      return LOG_INFO;
    case LogLevel::kWarning:
      return LOG_WARNING;
    case LogLevel::kError:
      return LOG_ERR;
  }
  return LOG_ERR;
}

// Appends `message` to `line` (which holds `used` bytes, capacity kMaxLine including the
// final NUL and room for '\n') with control characters as \xNN, so a CR/LF sent by a hostile
// peer cannot start a forged line. Returns the new length; marks truncation with "...".
std::size_t AppendEscaped(char* line, std::size_t used, const char* message) {
  // Keep room for "...", '\n' and NUL whatever happens.
  const std::size_t limit = kMaxLine - sizeof kTruncated - 1;
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char* p = message; *p != '\0'; ++p) {
    auto byte = static_cast<unsigned char>(*p);
    bool control = byte < 0x20 || byte == 0x7f;
    std::size_t needed = control ? 4 : 1;
    if (used + needed > limit) {
      std::memcpy(line + used, kTruncated, sizeof kTruncated - 1);
      return used + sizeof kTruncated - 1;
    }
    if (control) {
      line[used++] = '\\';
      line[used++] = 'x';
      line[used++] = kHex[byte >> 4];
      line[used++] = kHex[byte & 0xf];
    } else {
      line[used++] = *p;
    }
  }
  return used;
}

void WriteAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // Nowhere left to report a failing stderr.
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void LogInit(const char* ident, LogTarget target, LogLevel min_level) {
  std::snprintf(g_ident, sizeof g_ident, "%s", ident);
  g_min_level.store(static_cast<int>(min_level), std::memory_order_relaxed);
  g_target.store(target, std::memory_order_relaxed);
  if (target == LogTarget::kSyslog) openlog(g_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

StatusOr<LogLevel> ParseLogLevel(std::string_view text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warning") return LogLevel::kWarning;
  if (text == "error") return LogLevel::kError;
  return Status::Error("unknown log level '" + std::string(text) +
                       "' (expected debug, info, warning or error)");
}

StatusOr<LogTarget> ParseLogTarget(std::string_view text) {
  if (text == "syslog") return LogTarget::kSyslog;
  if (text == "stderr") return LogTarget::kStderr;
  return Status::Error("unknown log target '" + std::string(text) +
                       "' (expected syslog or stderr)");
}

void Log(LogLevel level, const char* format, ...) {
  if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) return;
  const int saved_errno = errno;  // callers log and then still inspect errno (and %m uses it)

  char message[kMaxLine];
  va_list args;
  va_start(args, format);
  int formatted = std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (formatted < 0) std::snprintf(message, sizeof message, "(bad log format: %s)", format);

  char line[kMaxLine];
  std::size_t used = 0;
  const LogTarget target = g_target.load(std::memory_order_relaxed);
  if (target == LogTarget::kStderr) {
    int prefix = std::snprintf(line, sizeof line, "%s[%ld]: %s: ", g_ident,
                               static_cast<long>(::getpid()), LevelWord(level));
    used = prefix > 0 ? static_cast<std::size_t>(prefix) : 0;
  }
  used = AppendEscaped(line, used, message);
  if (target == LogTarget::kSyslog) {
    line[used] = '\0';
    syslog(LOG_MAIL | SyslogPriority(level), "%s", line);
  } else {
    line[used++] = '\n';
    WriteAll(STDERR_FILENO, line, used);
  }
  errno = saved_errno;
}

}  // namespace mailpulse
