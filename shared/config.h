// Configuration: one TOML file for both programs, described by one declarative table of keys
// (section.name, type, default, reloadable, help). The same table drives parsing and validation,
// `--check-config`, `--dump-config` and docs/config.md, so they cannot drift apart.
//
// Every error names file:line (unknown key with a suggestion, wrong type, bad value, TOML
// syntax). Values are immutable after loading; a reload builds a new Config, so live sessions
// keep the one they started with (hold it by shared_ptr). Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

enum class ConfigType {
  kString,
  kInt,
  kBool,
  kStringList,
  kDuration,  // written as seconds (int or float) or a string "30s", "5m", "250ms", "1h"
};

struct ConfigKey {
  std::string_view key;  // "section.name", e.g. "milter.socket"
  ConfigType type;
  // A TOML literal: "\"unix:/run/mailpulse/milter.sock\"", "5", "[]", "true".
  std::string_view default_value;
  bool reloadable;
  std::string_view help;
};

// The table of every key both programs understand (defined in config_keys.cc).
const std::vector<ConfigKey>& ConfigKeys();

// A section written any number of times, as a TOML array of tables (`[[target]]`), each
// instance with its own values of the same keys. Key names are short ("host", not
// "target.host"); a key whose default_value is empty is required in every instance.
struct ConfigSectionArray {
  std::string_view name;  // "target"
  std::string_view help;
  std::vector<ConfigKey> keys;
};

// The table of every section array (defined in config_keys.cc).
const std::vector<ConfigSectionArray>& ConfigSectionArrays();

using ConfigValue = std::variant<std::string, std::int64_t, bool, std::vector<std::string>, double>;
using ConfigValueMap = std::map<std::string, ConfigValue, std::less<>>;

// One instance of a section array, such as one [[target]]: the values of its keys, defaults
// filled in. Getters take the short key name and abort on a key not in the array's table or
// read with the wrong type (programming errors, never caused by input).
class ConfigEntry {
 public:
  const std::string& GetString(std::string_view key) const;
  std::int64_t GetInt(std::string_view key) const;
  bool GetBool(std::string_view key) const;
  const std::vector<std::string>& GetStringList(std::string_view key) const;
  double GetSeconds(std::string_view key) const;

  // Whether the file gave the key (rather than the default).
  bool IsSet(std::string_view key) const;
  // "FILE:LINE" of the key's value; for a default, that of the entry's header.
  std::string Where(std::string_view key) const;
  // "FILE:LINE" of the entry's header (the `[[target]]` line).
  const std::string& where() const { return header_where_; }

  // An entry of section array `array` holding `values` (the parser's constructor).
  static ConfigEntry Make(std::string array, ConfigValueMap values,
                          std::map<std::string, std::string, std::less<>> where,
                          std::string header_where);

 private:
  friend class Config;
  std::string array_;  // the section array's name, for error messages
  ConfigValueMap values_;
  std::map<std::string, std::string, std::less<>> where_;
  std::string header_where_;
};

class Config {
 public:
  // All keys at their defaults.
  static Config Defaults();
  // Parses TOML text; `origin` is the file name used in error messages ("file:line: ...").
  static StatusOr<Config> Parse(std::string_view text, const std::string& origin);
  // Reads and parses a file. Missing or unreadable file is an error naming the path.
  static StatusOr<Config> Load(const std::string& path);

  // Overrides one key from a command-line value, given as text and converted by the key's
  // type (lists split on commas). Error names the key and the bad value.
  Status Set(std::string_view key, std::string_view value_text);

  // Typed getters. The key must be in ConfigKeys() with the matching type (a programming error
  // otherwise: aborts, as it can never be caused by input).
  const std::string& GetString(std::string_view key) const;
  std::int64_t GetInt(std::string_view key) const;
  bool GetBool(std::string_view key) const;
  const std::vector<std::string>& GetStringList(std::string_view key) const;
  double GetSeconds(std::string_view key) const;  // kDuration

  // The instances of a section array in file order ([[target]] ...); empty when none.
  // Aborts for a name not in ConfigSectionArrays().
  const std::vector<ConfigEntry>& Entries(std::string_view section_array) const;

  // Where a key's value came from, for errors found after parsing: "FILE:LINE",
  // "command line" or "built-in default".
  std::string Where(std::string_view key) const;

  // The effective configuration as TOML, every key with its help as a comment, then every
  // section array's entries. Keys whose name ends in "password" or "secret" are printed as
  // "<redacted>".
  std::string Dump() const;

 private:
  friend class ConfigTestPeer;  // tests reach DumpKeys() and values_ directly

  // Dump() over any key table, so redaction is testable before the real table has a secret.
  std::string DumpKeys(const std::vector<ConfigKey>& keys) const;

  ConfigValueMap values_;
  std::map<std::string, std::string, std::less<>> where_;
  std::map<std::string, std::vector<ConfigEntry>, std::less<>> entries_;
};

// docs/config.md content generated from ConfigKeys().
std::string RenderConfigReference();

}  // namespace mailpulse
