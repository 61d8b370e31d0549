// Configuration parsing, validation, overrides, dump and reference, all driven by ConfigKeys()
// and ConfigSectionArrays().
// toml++ reports syntax errors by throwing toml::parse_error; it is caught here and turned into
// a Status, so no exception leaves this file.
#include "shared/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

#include <toml++/toml.h>

#include "shared/config_text.h"

namespace mailpulse {
namespace {

using namespace config_text;  // NOLINT(google-build-using-namespace): this file's own helpers
using ValueMap = ConfigValueMap;
using WhereMap = std::map<std::string, std::string, std::less<>>;

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

const ConfigSectionArray* FindSectionArray(std::string_view name) {
  for (const ConfigSectionArray& array : ConfigSectionArrays()) {
    if (array.name == name) return &array;
  }
  return nullptr;
}

const ConfigKey* FindArrayKey(const ConfigSectionArray& array, std::string_view name) {
  for (const ConfigKey& key : array.keys) {
    if (key.key == name) return &key;
  }
  return nullptr;
}

std::string UnknownKeyMessage(std::string_view name, const std::vector<std::string>& candidates) {
  std::string message = "unknown key " + Quote(name);
  const std::vector<std::string_view> views(candidates.begin(), candidates.end());
  const std::string_view best = ClosestName(name, views);
  if (!best.empty()) message += " (did you mean '" + std::string(best) + "'?)";
  return message;
}

std::string UnknownKeyMessage(std::string_view name) {
  std::vector<std::string> names;
  for (const ConfigKey& key : ConfigKeys()) names.emplace_back(key.key);
  return UnknownKeyMessage(name, names);
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
// `name` is how errors call the key ("milter.timeout", "target.port").
std::optional<ConfigValue> ConvertNode(const ConfigKey& key, std::string_view name,
                                       const toml::node& node, ErrorList& errors) {
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
        errors.Add(node.source(), name, seconds.status().message());
        return std::nullopt;
      }
      break;
    case ConfigType::kStringList:
      if (const toml::array* array = node.as_array()) {
        std::vector<std::string> list;
        for (const toml::node& element : *array) {
          if (!element.is_string()) {
            errors.Add(element.source(), name,
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
  errors.Add(node.source(), name,
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
const T& GetTyped(const ValueMap& values, std::string_view key, std::string_view array = {}) {
  auto it = values.find(key);
  const T* value = nullptr;
  if constexpr (std::is_same_v<T, ConfigValue>) {
    if (it != values.end()) value = &it->second;
  } else {
    if (it != values.end()) value = std::get_if<T>(&it->second);
  }
  if (value == nullptr) {
    const std::string name =
        array.empty() ? std::string(key) : std::string(array) + "." + std::string(key);
    std::fprintf(stderr, "mailpulse: BUG: config key '%s' is %s\n", name.c_str(),
                 it == values.end() ? "not defined" : "read with the wrong type");
    std::abort();
  }
  return *value;
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

std::string LineOf(const std::string& origin, const toml::source_region& where) {
  return origin + ":" + std::to_string(where.begin.line);
}

// The defaults of every section array's keys (required keys have none), built once.
const ValueMap& ArrayDefaults(std::string_view array_name) {
  static const auto* const defaults = [] {
    auto* all = new std::map<std::string, ValueMap, std::less<>>();
    for (const ConfigSectionArray& array : ConfigSectionArrays()) {
      ValueMap& values = (*all)[std::string(array.name)];
      for (const ConfigKey& key : array.keys) {
        if (key.default_value.empty()) continue;
        ErrorList errors("built-in defaults");
        std::optional<ConfigValue> value;
        try {
          const toml::table t = toml::parse("v = " + std::string(key.default_value));
          value = ConvertNode(key, key.key, *t.get("v"), errors);
        } catch (const toml::parse_error&) {
        }
        if (!value) {  // the table is code: a bad default is a programming error
          std::fprintf(stderr, "mailpulse: BUG: bad default for %.*s.%.*s\n",
                       static_cast<int>(array.name.size()), array.name.data(),
                       static_cast<int>(key.key.size()), key.key.data());
          std::abort();
        }
        values.emplace(std::string(key.key), std::move(*value));
      }
    }
    return all;
  }();
  return defaults->find(array_name)->second;
}

// One [[name]] table: its values over the defaults; unknown and missing keys are errors.
ConfigEntry ParseEntry(const ConfigSectionArray& array, const toml::table& table,
                       const std::string& origin, ErrorList& errors) {
  const std::string prefix = std::string(array.name) + ".";
  ValueMap values = ArrayDefaults(array.name);
  WhereMap where;
  std::vector<std::string_view> given;  // known keys present, converted or not
  for (const auto& [name, node] : table) {
    const std::string display = prefix + std::string(name.str());
    const ConfigKey* key = FindArrayKey(array, name.str());
    if (key != nullptr) given.push_back(key->key);
    if (key == nullptr) {
      std::vector<std::string> candidates;
      for (const ConfigKey& k : array.keys) candidates.push_back(prefix + std::string(k.key));
      errors.Add(name.source(), "", UnknownKeyMessage(display, candidates));
    } else if (std::optional<ConfigValue> value = ConvertNode(*key, display, node, errors)) {
      where[std::string(name.str())] = LineOf(origin, node.source());
      values.insert_or_assign(std::string(name.str()), std::move(*value));
    }
  }
  for (const ConfigKey& key : array.keys) {
    if (key.default_value.empty() &&
        std::find(given.begin(), given.end(), key.key) == given.end()) {
      errors.Add(table.source(), "",
                 "[[" + std::string(array.name) + "]] lacks the required key " +
                     Quote(prefix + std::string(key.key)));
    }
  }
  return ConfigEntry::Make(std::string(array.name), std::move(values), std::move(where),
                           LineOf(origin, table.source()));
}

// `node` is what the file holds under a section array's name: it must be [[name]] tables.
void ApplySectionArray(const ConfigSectionArray& array, const toml::key& name,
                       const toml::node& node, const std::string& origin, ErrorList& errors,
                       std::vector<ConfigEntry>* entries) {
  const toml::array* list = node.as_array();
  if (list == nullptr || !list->is_array_of_tables()) {
    errors.Add(name.source(), "",
               Quote(name.str()) + " holds one section per item: write each as [[" +
                   std::string(array.name) + "]]");
    return;
  }
  for (const toml::node& element : *list) {
    entries->push_back(ParseEntry(array, *element.as_table(), origin, errors));
  }
}

// One [section] of plain keys.
void ApplySection(const toml::key& section_name, const toml::table& section,
                  const std::string& origin, ErrorList& errors, ValueMap& values, WhereMap* where) {
  for (const auto& [name, node] : section) {
    std::string full_name = std::string(section_name.str()) + "." + std::string(name.str());
    const ConfigKey* key = FindKey(full_name);
    if (key == nullptr) {
      errors.Add(name.source(), "", UnknownKeyMessage(full_name));
    } else if (std::optional<ConfigValue> value = ConvertNode(*key, full_name, node, errors)) {
      if (where != nullptr) (*where)[full_name] = LineOf(origin, node.source());
      values.insert_or_assign(std::move(full_name), std::move(*value));
    }
  }
}

// Parses `text` and stores every value in `values` (and section arrays in `entries`, when
// given); on error returns the earliest one in the file and leaves the maps partly updated.
Status ApplyToml(std::string_view text, const std::string& origin, ValueMap& values,
                 WhereMap* where,
                 std::map<std::string, std::vector<ConfigEntry>, std::less<>>* entries) {
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
    if (const ConfigSectionArray* array = FindSectionArray(section_name.str());
        array != nullptr && entries != nullptr) {
      ApplySectionArray(*array, section_name, section_node, origin, errors,
                        &(*entries)[std::string(array->name)]);
      continue;
    }
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
    ApplySection(section_name, *section, origin, errors, values, where);
  }
  return errors.First();
}

// A section array's entries as TOML, every key of each entry, secrets redacted.
std::string RenderEntries(const ConfigSectionArray& array,
                          const std::vector<const ValueMap*>& values) {
  std::string out =
      "\n" + PrefixLines("# ", "[[" + std::string(array.name) + "]]: " + std::string(array.help)) +
      "\n";
  if (values.empty()) out += "# (none)\n";
  for (const ValueMap* entry : values) {
    out += "[[" + std::string(array.name) + "]]\n";
    for (const ConfigKey& key : array.keys) {
      auto it = entry->find(key.key);
      if (it == entry->end()) continue;
      out += std::string(key.key) + " = " +
             (IsSecret(key.key) ? TomlString("<redacted>") : TomlLiteral(it->second)) + "\n";
    }
  }
  return out;
}

}  // namespace

Config Config::Defaults() {
  static const Config defaults = [] {
    Config config;
    std::string text =
        RenderToml(ConfigKeys(), [](const ConfigKey& key) { return key.default_value; });
    for (const ConfigSectionArray& array : ConfigSectionArrays()) {
      config.entries_[std::string(array.name)];
    }
    if (Status status = ApplyToml(text, "built-in defaults", config.values_, nullptr, nullptr);
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
  if (Status status = ApplyToml(text, origin, config.values_, &config.where_, &config.entries_);
      !status.ok()) {
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

const std::vector<ConfigEntry>& Config::Entries(std::string_view section_array) const {
  auto it = entries_.find(section_array);
  if (it == entries_.end()) {
    std::fprintf(stderr, "mailpulse: BUG: no config section array '%.*s'\n",
                 static_cast<int>(section_array.size()), section_array.data());
    std::abort();
  }
  return it->second;
}

std::string Config::Dump() const {
  std::string out = DumpKeys(ConfigKeys());
  for (const ConfigSectionArray& array : ConfigSectionArrays()) {
    std::vector<const ValueMap*> values;
    for (const ConfigEntry& entry : Entries(array.name)) values.push_back(&entry.values_);
    out += RenderEntries(array, values);
  }
  return out;
}

ConfigEntry ConfigEntry::Make(std::string array, ConfigValueMap values,
                              std::map<std::string, std::string, std::less<>> where,
                              std::string header_where) {
  ConfigEntry entry;
  entry.array_ = std::move(array);
  entry.values_ = std::move(values);
  entry.where_ = std::move(where);
  entry.header_where_ = std::move(header_where);
  return entry;
}

const std::string& ConfigEntry::GetString(std::string_view key) const {
  return GetTyped<std::string>(values_, key, array_);
}

std::int64_t ConfigEntry::GetInt(std::string_view key) const {
  return GetTyped<std::int64_t>(values_, key, array_);
}

bool ConfigEntry::GetBool(std::string_view key) const {
  return GetTyped<bool>(values_, key, array_);
}

const std::vector<std::string>& ConfigEntry::GetStringList(std::string_view key) const {
  return GetTyped<std::vector<std::string>>(values_, key, array_);
}

double ConfigEntry::GetSeconds(std::string_view key) const {
  return GetTyped<double>(values_, key, array_);
}

bool ConfigEntry::IsSet(std::string_view key) const { return where_.contains(key); }

std::string ConfigEntry::Where(std::string_view key) const {
  auto it = where_.find(key);
  return it == where_.end() ? header_where_ : it->second;
}

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
  for (const ConfigSectionArray& array : ConfigSectionArrays()) {
    out += "\n## [[" + std::string(array.name) + "]]\n\n" + std::string(array.help) + "\n\n";
    out += "| key | type | default | reloadable | description |\n";
    out += "| --- | --- | --- | --- | --- |\n";
    for (const ConfigKey& key : array.keys) {
      const std::string default_text =
          key.default_value.empty() ? "required" : "`" + TableCell(key.default_value) + "`";
      out += "| `" + std::string(array.name) + "." + std::string(key.key) + "` | " +
             std::string(NamesOf(key.type).word) + " | " + default_text + " | " +
             (key.reloadable ? "yes" : "no") + " | " + TableCell(key.help) + " |\n";
    }
  }
  return out;
}

}  // namespace mailpulse
