// Logging facade for the glue code (pure libraries never log). Writes to syslog with the mail
// facility in production, or to stderr in the foreground. Thread-safe: each call emits exactly
// one line with a single write. Every line should start with the identity of what it is about
// (queue id, target, peer), as Postfix does.
#pragma once

#include <string_view>

#include "shared/status.h"

namespace mailpulse {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogTarget { kSyslog, kStderr };

// Call once at start-up (before threads start). `ident` is the program name.
void LogInit(const char* ident, LogTarget target, LogLevel min_level);
StatusOr<LogLevel> ParseLogLevel(std::string_view text);
StatusOr<LogTarget> ParseLogTarget(std::string_view text);

// printf-style; lines are truncated at 4 KiB. Control characters in the output are escaped
// so a hostile peer cannot forge log lines.
void Log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

#define MP_LOG_DEBUG(...) ::mailpulse::Log(::mailpulse::LogLevel::kDebug, __VA_ARGS__)
#define MP_LOG_INFO(...) ::mailpulse::Log(::mailpulse::LogLevel::kInfo, __VA_ARGS__)
#define MP_LOG_WARNING(...) ::mailpulse::Log(::mailpulse::LogLevel::kWarning, __VA_ARGS__)
#define MP_LOG_ERROR(...) ::mailpulse::Log(::mailpulse::LogLevel::kError, __VA_ARGS__)

}  // namespace mailpulse
