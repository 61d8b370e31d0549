// Text helpers of the configuration code (config.cc): quoting untrusted text in error
// messages, TOML literals, durations, "did you mean" distances, Markdown table cells. Internal
// to shared/; pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse::config_text {

// Larger durations are surely typos, and capping them keeps later conversions to timeval or
// milliseconds far from overflow (~31 years).
inline constexpr double kMaxDurationSeconds = 1e9;

// Backslash-escapes `quote`, backslashes and control characters (formatted with
// `control_format`), so echoed text cannot break a message or a TOML string.
std::string Escape(std::string_view text, char quote, const char* control_format);
// Untrusted text echoed in an error message: 'text' with escapes.
std::string Quote(std::string_view text);
// A TOML basic string (TOML 1.0, "String"): \uXXXX is the escape valid for every control.
std::string TomlString(std::string_view text);
// Optimal string alignment distance: a swapped pair of letters ("sokcet") counts as one edit.
std::size_t EditDistance(std::string_view a, std::string_view b);
// The candidate closest to `name` within a small distance, or empty.
std::string_view ClosestName(std::string_view name, const std::vector<std::string_view>& names);
// Why a duration already in seconds is not acceptable, or nullopt.
std::optional<std::string> CheckSeconds(double seconds);
// Accepts "250ms", "30s", "5m", "1h", or bare seconds ("30", "1.5").
StatusOr<double> ParseDurationText(std::string_view text);
// Whole seconds as integers ("30"); others in the shortest form that reads back the same.
std::string TomlSeconds(double seconds);
std::string_view Trim(std::string_view text);
// Prefixes every line of `text` with `prefix` (help texts may span lines).
std::string PrefixLines(std::string_view prefix, std::string_view text);
// Markdown table cells cannot contain a raw '|' or newline.
std::string TableCell(std::string_view text);

}  // namespace mailpulse::config_text
