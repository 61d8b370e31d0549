// Configuration parsing, validation, overrides, dump and reference, all driven by ConfigKeys().
// toml++ reports syntax errors by throwing toml::parse_error; it is caught here and turned into
// a Status, so no exception leaves this file.
#include "shared/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

#include <toml++/toml.h>

namespace mailpulse {
namespace {

// Larger durations are surely typos, and capping them keeps later conversions to timeval or
// milliseconds far from overflow (~31 years).
constexpr double kMaxDurationSeconds = 1e9;
constexpr std::size_t kMaxSuggestionDistance = 3;

using ValueMap = std::map<std::string, ConfigValue, std::less<>>;

const ConfigKey* FindKey(std::string_view name) {
  for (const ConfigKey& key : ConfigKeys()) {
    if (key.key == name) return &key;
  }
  return nullptr;
}

std::string_view SectionOf(std::string_view key) { return key.substr(0, key.find('.')); }

// Section names in order of first appearance in `keys`.
std::vector<std::string_view> Sections(const std::vector<ConfigKey>& keys) {
  std::vector<std::string_view> sections;
  for (const ConfigKey& key : keys) {
    std::string_view section = SectionOf(key.key);
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
      sections.push_back(section);
    }
  }
  return sections;
}

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

std::string UnknownKeyMessage(std::string_view name) {
  std::string message = "unknown key " + Quote(name);
  std::string_view best;
  std::size_t best_distance = kMaxSuggestionDistance + 1;
  for (const ConfigKey& key : ConfigKeys()) {
    // The distance is at least the length difference; skipping early keeps a hostile
    // megabyte-long key from costing a quadratic comparison.
    std::size_t longer = std::max(name.size(), key.key.size());
    if (longer - std::min(name.size(), key.key.size()) > kMaxSuggestionDistance) continue;
    std::size_t distance = EditDistance(name, key.key);
    if (distance < best_distance) {
      best = key.key;
      best_distance = distance;
    }
  }
  if (!best.empty()) message += " (did you mean '" + std::string(best) + "'?)";
  return message;
}

// How each ConfigType is named in the reference and in "expected ..." errors.
struct TypeNames {
  std::string_view word;
  std::string_view expected;
};

TypeNames NamesOf(ConfigType type) {
  static constexpr TypeNames kNames[] = {
      {"string", "a string"},
      {"integer", "an integer"},
      {"boolean", "a boolean"},
      {"list of strings", "an array of strings"},
      {"duration", "a duration (seconds, or a string such as \"30s\")"},
  };
  static_assert(std::size(kNames) == static_cast<std::size_t>(ConfigType::kDuration) + 1);
  return kNames[static_cast<std::size_t>(type)];
}

std::string_view NodeTypeName(toml::node_type type) {
  static constexpr std::string_view kNames[] = {
      "nothing", "a table",   "an array", "a string", "an integer",
      "a float", "a boolean", "a date",   "a time",   "a date-time",
  };
  static_assert(std::size(kNames) == static_cast<std::size_t>(toml::node_type::date_time) + 1);
  return kNames[static_cast<std::size_t>(type)];
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

// Collects errors while walking a parsed file; the one reported is the earliest in the file.
class ErrorList {
 public:
  explicit ErrorList(std::string origin) : origin_(std::move(origin)) {}

  void Add(const toml::source_region& where, std::string_view key, std::string_view message) {
    std::string text = origin_ + ":" + std::to_string(where.begin.line) + ":" +
                       std::to_string(where.begin.column) + ": ";
    if (!key.empty()) text += std::string(key) + ": ";
    errors_.push_back({where.begin, text + std::string(message)});
  }

  Status First() const {
    if (errors_.empty()) return Status::Ok();
    auto first = std::min_element(errors_.begin(), errors_.end(),
                                  [](const auto& a, const auto& b) { return a.where < b.where; });
    return Status::Error(first->message);
  }

 private:
  struct Error {
    toml::source_position where;
    std::string message;
  };
  std::string origin_;
  std::vector<Error> errors_;
};

StatusOr<double> NodeSeconds(const toml::node& node) {
  if (auto text = node.value_exact<std::string>()) return ParseDurationText(*text);
  double seconds = node.is_integer() ? static_cast<double>(*node.value_exact<std::int64_t>())
                                     : *node.value_exact<double>();
  if (auto problem = CheckSeconds(seconds)) return Status::Error(*problem);
  return seconds;
}

// Converts one TOML value to the key's type; on failure records an error and returns nullopt.
std::optional<ConfigValue> ConvertNode(const ConfigKey& key, const toml::node& node,
                                       ErrorList& errors) {
  switch (key.type) {
    case ConfigType::kString:
      if (auto text = node.value_exact<std::string>()) return *text;
      break;
    case ConfigType::kInt:
      if (auto integer = node.value_exact<std::int64_t>()) return *integer;
      break;
    case ConfigType::kBool:
      if (auto boolean = node.value_exact<bool>()) return *boolean;
      break;
    case ConfigType::kDuration:
      if (node.is_integer() || node.is_floating_point() || node.is_string()) {
        StatusOr<double> seconds = NodeSeconds(node);
        if (seconds.ok()) return *seconds;
        errors.Add(node.source(), key.key, seconds.status().message());
        return std::nullopt;
      }
      break;
    case ConfigType::kStringList:
      if (const toml::array* array = node.as_array()) {
        std::vector<std::string> list;
        for (const toml::node& element : *array) {
          if (!element.is_string()) {
            errors.Add(element.source(), key.key,
                       "expected an array of strings, got " +
                           std::string(NodeTypeName(element.type())) + " element");
            return std::nullopt;
          }
          list.push_back(*element.value_exact<std::string>());
        }
        return list;
      }
      break;
  }
  errors.Add(node.source(), key.key,
             "expected " + std::string(NamesOf(key.type).expected) + ", got " +
                 std::string(NodeTypeName(node.type())));
  return std::nullopt;
}

// The dump must read back, so command-line text is held to what TOML can carry (valid UTF-8).
bool IsTomlSafe(std::string_view text) {
  try {
    toml::table table = toml::parse("x = " + TomlString(text));
    return true;
  } catch (const toml::parse_error&) {
    return false;
  }
}

std::string_view Trim(std::string_view text) {
  std::size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// "a, b,c" -> {"a", "b", "c"}; empty text is the empty list, but an empty item is a mistake.
StatusOr<ConfigValue> ParseListText(std::string_view text) {
  std::vector<std::string> list;
  if (Trim(text).empty()) return ConfigValue(list);
  std::size_t start = 0;
  while (true) {
    std::size_t comma = text.find(',', start);
    std::string_view item = Trim(text.substr(start, comma - start));
    if (item.empty()) return Status::Error("empty item in list " + Quote(text));
    list.emplace_back(item);
    if (comma == std::string_view::npos) return ConfigValue(std::move(list));
    start = comma + 1;
  }
}

// Converts command-line text by the key's type; the error omits the key (the caller adds it).
StatusOr<ConfigValue> ParseValueText(ConfigType type, std::string_view text) {
  if (!IsTomlSafe(text)) return Status::Error("value is not valid UTF-8");
  switch (type) {
    case ConfigType::kString:
      return ConfigValue(std::string(text));
    case ConfigType::kInt: {
      std::int64_t value = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        return Status::Error("expected an integer, got " + Quote(text));
      }
      return ConfigValue(value);
    }
    case ConfigType::kBool:
      if (text == "true" || text == "yes" || text == "1") return ConfigValue(true);
      if (text == "false" || text == "no" || text == "0") return ConfigValue(false);
      return Status::Error("expected true, false, yes, no, 1 or 0, got " + Quote(text));
    case ConfigType::kDuration: {
      StatusOr<double> seconds = ParseDurationText(text);
      if (!seconds.ok()) return seconds.status();
      return ConfigValue(*seconds);
    }
    case ConfigType::kStringList:
      return ParseListText(text);
  }
  return Status::Error("unsupported type");
}

// Typed access to a value; T = ConfigValue reads any type.
template <typename T>
const T& GetTyped(const ValueMap& values, std::string_view key) {
  auto it = values.find(key);
  const T* value = nullptr;
  if constexpr (std::is_same_v<T, ConfigValue>) {
    if (it != values.end()) value = &it->second;
  } else {
    if (it != values.end()) value = std::get_if<T>(&it->second);
  }
  if (value == nullptr) {
    std::fprintf(stderr, "mailpulse: BUG: config key '%.*s' is %s\n", static_cast<int>(key.size()),
                 key.data(), it == values.end() ? "not defined" : "read with the wrong type");
    std::abort();
  }
  return *value;
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

std::string TomlLiteral(const ConfigValue& value) {
  struct Visitor {
    std::string operator()(const std::string& s) const { return TomlString(s); }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(double d) const { return TomlSeconds(d); }
    std::string operator()(const std::vector<std::string>& list) const {
      std::string out = "[";
      for (std::size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + TomlString(list[i]);
      return out + "]";
    }
  };
  return std::visit(Visitor{}, value);
}

bool IsSecret(std::string_view key) { return key.ends_with("password") || key.ends_with("secret"); }

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

// TOML text for `keys` grouped by section in table order, each key under its help comment.
template <typename LiteralFn>
std::string RenderToml(const std::vector<ConfigKey>& keys, LiteralFn literal_of) {
  std::string out;
  for (std::string_view section : Sections(keys)) {
    out += "\n[" + std::string(section) + "]\n";
    for (const ConfigKey& key : keys) {
      if (SectionOf(key.key) != section) continue;
      out += PrefixLines("# ", key.help) + "\n" + std::string(key.key.substr(section.size() + 1)) +
             " = " + std::string(literal_of(key)) + "\n";
    }
  }
  return out;
}

// Parses `text` and stores every value in `values`; on error returns the earliest one in the
// file and leaves `values` partly updated.
Status ApplyToml(std::string_view text, const std::string& origin, ValueMap& values,
                 std::map<std::string, std::string, std::less<>>* where) {
  ErrorList errors(origin);
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& error) {
    errors.Add(error.source(), "", error.description());
    return errors.First();
  }
  const std::vector<std::string_view> sections = Sections(ConfigKeys());
  for (const auto& [section_name, section_node] : root) {
    const toml::table* section = section_node.as_table();
    if (section == nullptr) {
      errors.Add(section_name.source(), "",
                 "key " + Quote(section_name.str()) +
                     " is outside any section; keys belong in a section such as [milter]");
      continue;
    }
    bool known = std::find(sections.begin(), sections.end(), section_name.str()) != sections.end();
    if (!known && section->empty()) {
      errors.Add(section_name.source(), "", "unknown section " + Quote(section_name.str()));
    }
    for (const auto& [name, node] : *section) {
      std::string full_name = std::string(section_name.str()) + "." + std::string(name.str());
      const ConfigKey* key = FindKey(full_name);
      if (key == nullptr) {
        errors.Add(name.source(), "", UnknownKeyMessage(full_name));
      } else if (std::optional<ConfigValue> value = ConvertNode(*key, node, errors)) {
        if (where != nullptr) {
          (*where)[full_name] = origin + ":" + std::to_string(node.source().begin.line);
        }
        values.insert_or_assign(std::move(full_name), std::move(*value));
      }
    }
  }
  return errors.First();
}

}  // namespace

Config Config::Defaults() {
  static const Config defaults = [] {
    Config config;
    std::string text =
        RenderToml(ConfigKeys(), [](const ConfigKey& key) { return key.default_value; });
    if (Status status = ApplyToml(text, "built-in defaults", config.values_, nullptr);
        !status.ok()) {
      // The table is code, not input: a bad default can only be a programming error.
      std::fprintf(stderr, "mailpulse: BUG: %s\n", status.message().c_str());
      std::abort();
    }
    return config;
  }();
  return defaults;
}

std::string Config::Where(std::string_view key) const {
  auto it = where_.find(key);
  return it == where_.end() ? "built-in default" : it->second;
}

StatusOr<Config> Config::Parse(std::string_view text, const std::string& origin) {
  Config config = Defaults();
  if (Status status = ApplyToml(text, origin, config.values_, &config.where_); !status.ok()) {
    return status;
  }
  return config;
}

StatusOr<Config> Config::Load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error("cannot read config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[16384];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved_errno = errno;  // close() may clobber it
      ::close(fd);
      return Status::Error("cannot read config file " + path + ": " + std::strerror(saved_errno));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return Parse(text, path);
}

Status Config::Set(std::string_view key, std::string_view value_text) {
  const ConfigKey* config_key = FindKey(key);
  if (config_key == nullptr) return Status::Error(UnknownKeyMessage(key));
  StatusOr<ConfigValue> value = ParseValueText(config_key->type, value_text);
  if (!value.ok()) return Status::Error(std::string(key) + ": " + value.status().message());
  values_.insert_or_assign(std::string(key), std::move(*value));
  where_[std::string(key)] = "command line";
  return Status::Ok();
}

const std::string& Config::GetString(std::string_view key) const {
  return GetTyped<std::string>(values_, key);
}

std::int64_t Config::GetInt(std::string_view key) const {
  return GetTyped<std::int64_t>(values_, key);
}

bool Config::GetBool(std::string_view key) const { return GetTyped<bool>(values_, key); }

const std::vector<std::string>& Config::GetStringList(std::string_view key) const {
  return GetTyped<std::vector<std::string>>(values_, key);
}

double Config::GetSeconds(std::string_view key) const { return GetTyped<double>(values_, key); }

std::string Config::Dump() const { return DumpKeys(ConfigKeys()); }

std::string Config::DumpKeys(const std::vector<ConfigKey>& keys) const {
  return "# mailpulse effective configuration. Durations are in seconds; secrets are redacted.\n" +
         RenderToml(keys, [this](const ConfigKey& key) {
           return IsSecret(key.key) ? TomlString("<redacted>")
                                    : TomlLiteral(GetTyped<ConfigValue>(values_, key.key));
         });
}

std::string RenderConfigReference() {
  std::string out =
      "# Configuration reference\n\n"
      "<!-- Generated from shared/config_keys.cc by RenderConfigReference(); do not edit. -->\n\n"
      "The milter and the probe read one TOML file: the one named with `--config`, else "
      "`/etc/mailpulse/mailpulse.toml` if it exists, else the built-in defaults below. A few "
      "keys can also be overridden by command-line options (such as `--socket` for "
      "`milter.socket`). `--check-config` validates the configuration and `--dump-config` "
      "prints the effective values, with passwords and secrets redacted.\n\n"
      "Durations are seconds (an integer or a float) or a string with a unit: `\"250ms\"`, "
      "`\"30s\"`, `\"5m\"`, `\"1h\"`. Reloadable keys take effect when the configuration is "
      "reloaded (new sessions get the new values); the others need a restart.\n";
  for (std::string_view section : Sections(ConfigKeys())) {
    out += "\n## [" + std::string(section) + "]\n\n";
    out += "| key | type | default | reloadable | description |\n";
    out += "| --- | --- | --- | --- | --- |\n";
    for (const ConfigKey& key : ConfigKeys()) {
      if (SectionOf(key.key) != section) continue;
      out += "| `" + std::string(key.key) + "` | " + std::string(NamesOf(key.type).word) + " | `" +
             TableCell(key.default_value) + "` | " + (key.reloadable ? "yes" : "no") + " | " +
             TableCell(key.help) + " |\n";
    }
  }
  return out;
}

}  // namespace mailpulse
