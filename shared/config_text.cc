// Text helpers of the configuration code; see config_text.h.
#include "shared/config_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace mailpulse::config_text {
namespace {

constexpr std::size_t kMaxSuggestionDistance = 3;

}  // namespace

// Backslash-escapes `quote`, backslashes and control characters (formatted with
// `control_format`), so echoed text cannot break a message or a TOML string.
std::string Escape(std::string_view text, char quote, const char* control_format) {
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, control_format, static_cast<unsigned>(byte));
      out += escaped;
    } else {
      if (c == quote || c == '\\') out += '\\';
      out += c;
    }
  }
  return out;
}

// Untrusted text echoed in an error message.
std::string Quote(std::string_view text) { return "'" + Escape(text, '\'', "\\x%02x") + "'"; }

// A TOML basic string (TOML 1.0, "String"): \uXXXX is the escape valid for every control.
std::string TomlString(std::string_view text) { return '"' + Escape(text, '"', "\\u%04X") + '"'; }

// Optimal string alignment distance: a swapped pair of letters ("sokcet") counts as one edit.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  const std::size_t width = b.size() + 1;
  std::vector<std::size_t> d((a.size() + 1) * width);
  for (std::size_t i = 0; i <= a.size(); ++i) d[i * width] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      std::size_t best = std::min({d[(i - 1) * width + j] + 1, d[i * width + j - 1] + 1,
                                   d[(i - 1) * width + j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        best = std::min(best, d[(i - 2) * width + j - 2] + 1);
      }
      d[i * width + j] = best;
    }
  }
  return d.back();
}

// Checks a duration already in seconds (from an integer, float or the text parser).
std::optional<std::string> CheckSeconds(double seconds) {
  if (!std::isfinite(seconds)) return "duration must be a finite number";
  if (seconds < 0) return "duration must not be negative";
  if (seconds > kMaxDurationSeconds) return "duration is too large (at most 1e9 seconds)";
  return std::nullopt;
}

// Accepts "250ms", "30s", "5m", "1h", or bare seconds ("30", "1.5").
StatusOr<double> ParseDurationText(std::string_view text) {
  std::size_t number_end = text.find_first_not_of("0123456789.");
  if (number_end == std::string_view::npos) number_end = text.size();
  std::string_view number = text.substr(0, number_end);
  std::string_view unit = text.substr(number_end);
  double value = 0;
  const char* end = number.data() + number.size();
  bool number_ok = !number.empty() && number.front() != '.' && number.back() != '.' &&
                   std::count(number.begin(), number.end(), '.') <= 1;
  if (number_ok) {
    auto [ptr, ec] = std::from_chars(number.data(), end, value);
    number_ok = ec == std::errc() && ptr == end;
  }
  std::optional<double> scale;
  if (unit.empty() || unit == "s") scale = 1;
  if (unit == "m") scale = 60;
  if (unit == "h") scale = 3600;
  if (unit == "ms") scale = 1.0 / 1000;
  if (!number_ok || !scale) {
    return Status::Error("bad duration " + Quote(text) +
                         " (expected seconds, or a number with unit ms, s, m or h such as "
                         "\"250ms\", \"30s\", \"5m\", \"1h\")");
  }
  // Milliseconds divide rather than multiply by 0.001, so "250ms" is exactly 0.25.
  double seconds = unit == "ms" ? value / 1000 : value * *scale;
  if (auto problem = CheckSeconds(seconds)) return Status::Error(*problem + ", got " + Quote(text));
  return seconds;
}

std::string_view Trim(std::string_view text) {
  std::size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

std::string TomlSeconds(double seconds) {
  // Whole seconds print as integers ("30", not "30.0"); others in the shortest form that
  // reads back to the same double.
  if (seconds == std::floor(seconds) && std::fabs(seconds) <= kMaxDurationSeconds) {
    return std::to_string(static_cast<std::int64_t>(seconds));
  }
  char buffer[64];
  auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof buffer, seconds);
  return ec == std::errc() ? std::string(buffer, ptr) : "0";
}

// Prefixes every line of `text` with `prefix` (help texts may span lines).
std::string PrefixLines(std::string_view prefix, std::string_view text) {
  std::string out(prefix);
  for (char c : text) {
    out += c;
    if (c == '\n') out += prefix;
  }
  return out;
}

// Markdown table cells cannot contain a raw '|' or newline.
std::string TableCell(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '|' ? "\\|" : c == '\n' ? " " : std::string(1, c);
  return out;
}

std::string_view ClosestName(std::string_view name, const std::vector<std::string_view>& names) {
  std::string_view best;
  std::size_t best_distance = kMaxSuggestionDistance + 1;
  for (std::string_view candidate : names) {
    // The distance is at least the length difference; skipping early keeps a hostile
    // megabyte-long key from costing a quadratic comparison.
    const std::size_t longer = std::max(name.size(), candidate.size());
    if (longer - std::min(name.size(), candidate.size()) > kMaxSuggestionDistance) continue;
    const std::size_t distance = EditDistance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace mailpulse::config_text
