#include "shared/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace mailpulse {

// Reaches Config's internals so redaction can be tested with a table that has secrets.
class ConfigTestPeer {
 public:
  static void Put(Config& config, const std::string& key, ConfigValue value) {
    config.values_.insert_or_assign(key, std::move(value));
  }
  static std::string DumpKeys(const Config& config, const std::vector<ConfigKey>& keys) {
    return config.DumpKeys(keys);
  }
};

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Every key's value read through the public typed getters.
ConfigValue ValueOf(const Config& config, const ConfigKey& key) {
  switch (key.type) {
    case ConfigType::kString:
      return config.GetString(key.key);
    case ConfigType::kInt:
      return config.GetInt(key.key);
    case ConfigType::kBool:
      return config.GetBool(key.key);
    case ConfigType::kStringList:
      return config.GetStringList(key.key);
    case ConfigType::kDuration:
      return config.GetSeconds(key.key);
  }
  return {};
}

std::string ParseError(std::string_view text) {
  StatusOr<Config> config = Config::Parse(text, "test.toml");
  EXPECT_FALSE(config.ok()) << "parsed although an error was expected:\n" << text;
  return config.status().message();
}

Config ParseOk(std::string_view text) {
  StatusOr<Config> config = Config::Parse(text, "test.toml");
  EXPECT_TRUE(config.ok()) << config.status().message();
  return config.ok() ? *config : Config::Defaults();
}

TEST(ConfigTest, DefaultsHoldTheTableValues) {
  Config config = Config::Defaults();
  EXPECT_EQ(config.GetString("log.target"), "syslog");
  EXPECT_EQ(config.GetString("milter.socket"), "unix:/run/mailpulse/milter.sock");
  EXPECT_EQ(config.GetString("milter.hop_name"), "");
  EXPECT_EQ(config.GetInt("milter.event_queue_size"), 256);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.snapshot_interval"), 5.0);
  EXPECT_EQ(config.GetStringList("milter.trusted_networks"),
            (std::vector<std::string>{"127.0.0.0/8", "::1/128"}));
}

TEST(ConfigTest, EveryKeyInTheTableHasADefaultOfItsType) {
  Config config = Config::Defaults();
  // Each getter aborts on a missing key or a type mismatch, so reaching the end is the test.
  for (const ConfigKey& key : ConfigKeys()) ValueOf(config, key);
}

TEST(ConfigTest, EmptyFileYieldsTheDefaults) {
  Config config = ParseOk("");
  for (const ConfigKey& key : ConfigKeys()) {
    EXPECT_EQ(ValueOf(config, key), ValueOf(Config::Defaults(), key)) << key.key;
  }
}

TEST(ConfigTest, ValidFileOverridesOnlyTheKeysItNames) {
  Config config = ParseOk(R"(
[log]
level = "debug"

[milter]
socket = "inet:8891@localhost"
trusted_networks = ["10.0.0.0/8", "192.0.2.0/24"]
event_queue_size = 1024
timeout = 10
)");
  EXPECT_EQ(config.GetString("log.level"), "debug");
  EXPECT_EQ(config.GetString("log.target"), "syslog");
  EXPECT_EQ(config.GetString("milter.socket"), "inet:8891@localhost");
  EXPECT_EQ(config.GetStringList("milter.trusted_networks"),
            (std::vector<std::string>{"10.0.0.0/8", "192.0.2.0/24"}));
  EXPECT_EQ(config.GetInt("milter.event_queue_size"), 1024);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.timeout"), 10.0);
  EXPECT_EQ(config.GetString("probe.metrics_listen"), "127.0.0.1:9798");
}

TEST(ConfigTest, DottedKeysOutsideASectionHeaderAreAccepted) {
  Config config = ParseOk("milter.hop_name = \"mx1\"\n");
  EXPECT_EQ(config.GetString("milter.hop_name"), "mx1");
}

TEST(ConfigTest, UnknownKeySuggestsTheClosestKeyAndNamesFileAndLine) {
  EXPECT_EQ(ParseError("[milter]\nuser = \"mail\"\nsokcet = \"unix:/x\"\n"),
            "test.toml:3:1: unknown key 'milter.sokcet' (did you mean 'milter.socket'?)");
}

TEST(ConfigTest, UnknownKeyFarFromEveryKeyGetsNoSuggestion) {
  std::string error = ParseError("[milter]\nfrobnicate = 1\n");
  EXPECT_THAT(error, StartsWith("test.toml:2:"));
  EXPECT_THAT(error, HasSubstr("unknown key 'milter.frobnicate'"));
  EXPECT_THAT(error, ::testing::Not(HasSubstr("did you mean")));
}

TEST(ConfigTest, MisspelledSectionSuggestsTheKeyInTheRightSection) {
  EXPECT_THAT(
      ParseError("[miltr]\nsocket = \"unix:/x\"\n"),
      HasSubstr("test.toml:2:1: unknown key 'miltr.socket' (did you mean 'milter.socket'?)"));
}

TEST(ConfigTest, EmptyUnknownSectionIsAnError) {
  EXPECT_THAT(ParseError("\n[miltr]\n"), StartsWith("test.toml:2:"));
}

TEST(ConfigTest, KeyOutsideAnySectionIsAnError) {
  EXPECT_THAT(ParseError("socket = \"unix:/x\"\n"),
              StartsWith("test.toml:1:1: key 'socket' is outside any section"));
}

TEST(ConfigTest, WrongTypeNamesFileLineKeyAndBothTypes) {
  EXPECT_EQ(ParseError("[milter]\nmetrics_listen = 9797\n"),
            "test.toml:2:18: milter.metrics_listen: expected a string, got an integer");
}

TEST(ConfigTest, TableWhereAValueBelongsIsAWrongType) {
  EXPECT_THAT(ParseError("[milter.socket]\npath = \"/x\"\n"),
              HasSubstr("milter.socket: expected a string, got a table"));
}

TEST(ConfigTest, TheErrorReportedIsTheFirstInTheFile) {
  // Alphabetically event_queue_size comes first, but user is earlier in the file.
  EXPECT_THAT(ParseError("[milter]\nuser = 1\nevent_queue_size = \"many\"\n"),
              StartsWith("test.toml:2:8: milter.user:"));
}

TEST(ConfigTest, DurationAcceptsSecondsAndStringsWithUnits) {
  Config config = ParseOk(R"(
[milter]
snapshot_interval = 1.5
timeout = "250ms"
)");
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.snapshot_interval"), 1.5);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.timeout"), 0.25);
  for (auto [text, seconds] : {std::pair{"30s", 30.0}, {"5m", 300.0}, {"1h", 3600.0}}) {
    Config parsed = ParseOk("[milter]\ntimeout = \"" + std::string(text) + "\"\n");
    EXPECT_DOUBLE_EQ(parsed.GetSeconds("milter.timeout"), seconds) << text;
  }
}

TEST(ConfigTest, BadDurationStringNamesFileAndLine) {
  EXPECT_THAT(ParseError("[milter]\n\ntimeout = \"5 minutes\"\n"),
              StartsWith("test.toml:3:11: milter.timeout: bad duration '5 minutes'"));
}

TEST(ConfigTest, DurationRejectsNegativeInfiniteAndHugeValues) {
  EXPECT_THAT(ParseError("[milter]\ntimeout = -1\n"), HasSubstr("must not be negative"));
  EXPECT_THAT(ParseError("[milter]\ntimeout = inf\n"), HasSubstr("finite"));
  EXPECT_THAT(ParseError("[milter]\ntimeout = nan\n"), HasSubstr("finite"));
  EXPECT_THAT(ParseError("[milter]\ntimeout = \"99999999999h\"\n"), HasSubstr("too large"));
  EXPECT_THAT(ParseError("[milter]\ntimeout = \"-5s\"\n"), HasSubstr("bad duration"));
  EXPECT_THAT(ParseError("[milter]\ntimeout = true\n"), HasSubstr("expected a duration"));
}

TEST(ConfigTest, NonStringListElementIsReportedOnItsOwnLine) {
  EXPECT_EQ(ParseError("[milter]\ntrusted_networks = [\n  \"10.0.0.0/8\",\n  8,\n]\n"),
            "test.toml:4:3: milter.trusted_networks: expected an array of strings, got an "
            "integer element");
}

TEST(ConfigTest, TomlSyntaxErrorNamesFileAndLine) {
  EXPECT_THAT(ParseError("[milter]\nsocket = \"unterminated\n"), StartsWith("test.toml:2:"));
  EXPECT_THAT(ParseError("[milter]\nuser = \"a\"\nuser = \"b\"\n"), StartsWith("test.toml:3:"));
}

TEST(ConfigTest, BinaryGarbageIsAnErrorNotACrash) {
  std::string garbage("\xff\xfe\0[\x01\x7f]==\"", 10);
  EXPECT_THAT(ParseError(garbage), StartsWith("test.toml:1:"));
}

TEST(ConfigTest, LoadReadsTheFileAndNamesItInErrors) {
  char path[] = "/tmp/mailpulse_config_testXXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string text = "[log]\nlevel = \"error\"\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  StatusOr<Config> config = Config::Load(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->GetString("log.level"), "error");

  FILE* file = std::fopen(path, "a");
  ASSERT_NE(file, nullptr);
  std::fputs("levle = \"info\"\n", file);
  std::fclose(file);
  StatusOr<Config> broken = Config::Load(path);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), StartsWith(std::string(path) + ":3:1: unknown key"));
  unlink(path);
}

TEST(ConfigTest, LoadOfAMissingFileNamesThePathAndTheReason) {
  StatusOr<Config> config = Config::Load("/nonexistent/mailpulse.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(),
            "cannot read config file /nonexistent/mailpulse.toml: No such file or directory");
}

TEST(ConfigTest, LoadOfADirectoryIsAnError) {
  StatusOr<Config> config = Config::Load("/tmp");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), StartsWith("cannot read config file /tmp: "));
}

TEST(ConfigSetTest, OverridesConvertTextByTheKeyType) {
  Config config = Config::Defaults();
  ASSERT_TRUE(config.Set("milter.socket", "inet:8891@[::1]").ok());
  ASSERT_TRUE(config.Set("milter.event_queue_size", "-3").ok());
  ASSERT_TRUE(config.Set("milter.timeout", "2m").ok());
  ASSERT_TRUE(config.Set("milter.snapshot_interval", "0.5").ok());
  EXPECT_EQ(config.GetString("milter.socket"), "inet:8891@[::1]");
  EXPECT_EQ(config.GetInt("milter.event_queue_size"), -3);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.timeout"), 120.0);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.snapshot_interval"), 0.5);
}

TEST(ConfigSetTest, ListsSplitOnCommasWithWhitespaceTrimmed) {
  Config config = Config::Defaults();
  ASSERT_TRUE(config.Set("milter.trusted_networks", " 10.0.0.0/8 ,\t192.0.2.0/24").ok());
  EXPECT_EQ(config.GetStringList("milter.trusted_networks"),
            (std::vector<std::string>{"10.0.0.0/8", "192.0.2.0/24"}));
  ASSERT_TRUE(config.Set("milter.trusted_networks", "").ok());
  EXPECT_TRUE(config.GetStringList("milter.trusted_networks").empty());
}

TEST(ConfigSetTest, RejectsAnUnknownKeyWithASuggestion) {
  Config config = Config::Defaults();
  EXPECT_EQ(config.Set("milter.timout", "5").message(),
            "unknown key 'milter.timout' (did you mean 'milter.timeout'?)");
}

TEST(ConfigSetTest, RejectsBadValuesNamingKeyAndValueAndKeepsTheOldValue) {
  Config config = Config::Defaults();
  EXPECT_EQ(config.Set("milter.event_queue_size", "12x").message(),
            "milter.event_queue_size: expected an integer, got '12x'");
  EXPECT_THAT(config.Set("milter.event_queue_size", "").message(),
              HasSubstr("expected an integer"));
  EXPECT_THAT(config.Set("milter.timeout", "soon").message(),
              StartsWith("milter.timeout: bad duration 'soon'"));
  EXPECT_THAT(config.Set("milter.trusted_networks", "a,,b").message(), HasSubstr("empty item"));
  EXPECT_THAT(config.Set("milter.socket", "\xc3\x28").message(), HasSubstr("UTF-8"));
  EXPECT_EQ(config.GetInt("milter.event_queue_size"), 256);
  EXPECT_DOUBLE_EQ(config.GetSeconds("milter.timeout"), 30.0);
}

TEST(ConfigDumpTest, ParsesBackToTheSameValues) {
  Config config = Config::Defaults();
  ASSERT_TRUE(config.Set("milter.hop_name", "mx \"1\" \\ tab\there\nnewline \x7f ünï").ok());
  ASSERT_TRUE(config.Set("milter.timeout", "250ms").ok());
  ASSERT_TRUE(config.Set("milter.snapshot_interval", "0.1").ok());
  ASSERT_TRUE(config.Set("milter.event_queue_size", "-7").ok());
  ASSERT_TRUE(config.Set("milter.trusted_networks", "a\"b, c\\d").ok());
  StatusOr<Config> reread = Config::Parse(config.Dump(), "dump");
  ASSERT_TRUE(reread.ok()) << reread.status().message() << "\n" << config.Dump();
  for (const ConfigKey& key : ConfigKeys()) {
    EXPECT_EQ(ValueOf(*reread, key), ValueOf(config, key)) << key.key;
  }
}

TEST(ConfigDumpTest, EveryKeyFollowsItsHelpCommentInItsSection) {
  std::string dump = Config::Defaults().Dump();
  EXPECT_THAT(dump, HasSubstr("\n[log]\n# Where logs go: \"syslog\" (mail facility) or \"stderr\". "
                              "--foreground forces stderr.\ntarget = \"syslog\"\n"));
  EXPECT_THAT(dump, HasSubstr("\n[probe]\n"));
}

TEST(ConfigDumpTest, DurationsAreWrittenAsSeconds) {
  Config config = Config::Defaults();
  ASSERT_TRUE(config.Set("milter.timeout", "5m").ok());
  ASSERT_TRUE(config.Set("milter.snapshot_interval", "1500ms").ok());
  std::string dump = config.Dump();
  EXPECT_THAT(dump, HasSubstr("\ntimeout = 300\n"));
  EXPECT_THAT(dump, HasSubstr("\nsnapshot_interval = 1.5\n"));
}

TEST(ConfigDumpTest, PasswordsAndSecretsAreRedacted) {
  const std::vector<ConfigKey> keys = {
      {"smtp.user", ConfigType::kString, R"("")", true, "Login."},
      {"smtp.password", ConfigType::kString, R"("")", true, "Password."},
      {"smtp.token_secret", ConfigType::kString, R"("")", true, "Token key."},
  };
  Config config = Config::Defaults();
  ConfigTestPeer::Put(config, "smtp.user", std::string("probe"));
  ConfigTestPeer::Put(config, "smtp.password", std::string("hunter2"));
  ConfigTestPeer::Put(config, "smtp.token_secret", std::string("s3cr3t"));
  std::string dump = ConfigTestPeer::DumpKeys(config, keys);
  EXPECT_THAT(dump, HasSubstr("\nuser = \"probe\"\n"));
  EXPECT_THAT(dump, HasSubstr("\npassword = \"<redacted>\"\n"));
  EXPECT_THAT(dump, HasSubstr("\ntoken_secret = \"<redacted>\"\n"));
  EXPECT_THAT(dump, ::testing::Not(HasSubstr("hunter2")));
  EXPECT_THAT(dump, ::testing::Not(HasSubstr("s3cr3t")));
}

TEST(ConfigReferenceTest, HasATableRowForEveryKeyUnderItsSection) {
  std::string reference = RenderConfigReference();
  EXPECT_THAT(reference, StartsWith("# "));
  EXPECT_THAT(reference, HasSubstr("| key | type | default | reloadable | description |"));
  for (const ConfigKey& key : ConfigKeys()) {
    std::string section = "\n## [" + std::string(key.key.substr(0, key.key.find('.'))) + "]\n";
    std::size_t section_at = reference.find(section);
    std::size_t row_at = reference.find("| `" + std::string(key.key) + "` |");
    ASSERT_NE(section_at, std::string::npos) << section;
    ASSERT_NE(row_at, std::string::npos) << key.key;
    EXPECT_LT(section_at, row_at) << key.key;
  }
  EXPECT_THAT(reference, HasSubstr("| `milter.timeout` | duration | `30` | no |"));
}

TEST(ConfigDeathTest, GetterWithTheWrongTypeAborts) {
  Config config = Config::Defaults();
  EXPECT_DEATH(config.GetInt("log.target"), "log.target");
  EXPECT_DEATH(config.GetString("no.such_key"), "no.such_key");
}

}  // namespace
}  // namespace mailpulse

namespace mailpulse {
namespace {

TEST(ConfigWhereTest, NamesFileAndLineCommandLineOrDefault) {
  auto config = Config::Parse("[milter]\n\nhop_name = \"edge\"\n", "where.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->Where("milter.hop_name"), "where.toml:3");
  EXPECT_EQ(config->Where("milter.socket"), "built-in default");
  ASSERT_TRUE(config->Set("milter.socket", "unix:/tmp/m.sock").ok());
  EXPECT_EQ(config->Where("milter.socket"), "command line");
}

}  // namespace
}  // namespace mailpulse

namespace mailpulse {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTwoTargets[] = R"(
[probe]
max_concurrent_checks = 8

[[target]]
name = "mx1"
host = "mx1.example.org"
tls = "starttls"
to = ["a@example.org"]

[[target]]
name = "submission"
host = "192.0.2.1"
port = 587
interval = "30s"
)";

TEST(ConfigSectionArrayTest, EntriesComeInFileOrderWithDefaultsFilledIn) {
  auto config = Config::Parse(kTwoTargets, "t.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  const std::vector<ConfigEntry>& targets = config->Entries("target");
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].GetString("name"), "mx1");
  EXPECT_EQ(targets[0].GetString("tls"), "starttls");
  EXPECT_EQ(targets[0].GetInt("port"), 0);  // the default
  EXPECT_EQ(targets[0].GetStringList("to"), std::vector<std::string>{"a@example.org"});
  EXPECT_DOUBLE_EQ(targets[0].GetSeconds("interval"), 60.0);
  EXPECT_TRUE(targets[0].GetBool("verify"));
  EXPECT_EQ(targets[1].GetString("name"), "submission");
  EXPECT_EQ(targets[1].GetInt("port"), 587);
  EXPECT_DOUBLE_EQ(targets[1].GetSeconds("interval"), 30.0);
  EXPECT_EQ(config->GetInt("probe.max_concurrent_checks"), 8);
}

TEST(ConfigSectionArrayTest, NoEntriesIsAnEmptyList) {
  EXPECT_TRUE(Config::Defaults().Entries("target").empty());
  auto config = Config::Parse("[probe]\nname = \"p\"\n", "t.toml");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->Entries("target").empty());
}

TEST(ConfigSectionArrayTest, WhereNamesTheValueLineOrElseTheHeaderLine) {
  auto config = Config::Parse(kTwoTargets, "t.toml");
  ASSERT_TRUE(config.ok());
  const ConfigEntry& submission = config->Entries("target")[1];
  EXPECT_EQ(submission.where(), "t.toml:11");
  EXPECT_EQ(submission.Where("port"), "t.toml:14");
  EXPECT_TRUE(submission.IsSet("port"));
  EXPECT_EQ(submission.Where("tls"), "t.toml:11");
  EXPECT_FALSE(submission.IsSet("tls"));
}

TEST(ConfigSectionArrayTest, UnknownKeySuggestsTheClosestKeyOfTheSection) {
  EXPECT_EQ(ParseError("[[target]]\nname = \"a\"\nhost = \"h\"\nprot = 25\n"),
            "test.toml:4:1: unknown key 'target.prot' (did you mean 'target.port'?)");
}

TEST(ConfigSectionArrayTest, MissingRequiredKeyNamesTheSectionHeader) {
  EXPECT_EQ(ParseError("\n[[target]]\nname = \"a\"\n"),
            "test.toml:2:1: [[target]] lacks the required key 'target.host'");
}

TEST(ConfigSectionArrayTest, WrongTypeNamesFileLineAndKey) {
  EXPECT_EQ(ParseError("[[target]]\nname = \"a\"\nhost = \"h\"\nport = \"25\"\n"),
            "test.toml:4:8: target.port: expected an integer, got a string");
  EXPECT_THAT(ParseError("[[target]]\nname = \"a\"\nhost = \"h\"\ninterval = \"often\"\n"),
              StartsWith("test.toml:4:12: target.interval: bad duration 'often'"));
}

TEST(ConfigSectionArrayTest, SingleBracketsAreAnErrorThatSaysHowToWriteIt) {
  EXPECT_THAT(ParseError("[target]\nname = \"a\"\nhost = \"h\"\n"),
              AllOf(StartsWith("test.toml:1:"), HasSubstr("write each as [[target]]")));
  EXPECT_THAT(ParseError("target = 5\n"), HasSubstr("write each as [[target]]"));
}

TEST(ConfigSectionArrayTest, TheFirstErrorInTheFileIsReported) {
  EXPECT_THAT(ParseError("[[target]]\nname = 1\nhost = \"h\"\n\n[[target]]\nprot = 1\n"),
              StartsWith("test.toml:2:8: target.name:"));
}

TEST(ConfigSectionArrayTest, DumpParsesBackToTheSameEntries) {
  auto config = Config::Parse(kTwoTargets, "t.toml");
  ASSERT_TRUE(config.ok());
  const std::string dump = config->Dump();
  auto reread = Config::Parse(dump, "dump");
  ASSERT_TRUE(reread.ok()) << reread.status().message() << "\n" << dump;
  ASSERT_EQ(reread->Entries("target").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const ConfigEntry& a = config->Entries("target")[i];
    const ConfigEntry& b = reread->Entries("target")[i];
    for (const ConfigKey& key : ConfigSectionArrays()[0].keys) {
      switch (key.type) {
        case ConfigType::kString:
          EXPECT_EQ(a.GetString(key.key), b.GetString(key.key)) << key.key;
          break;
        case ConfigType::kInt:
          EXPECT_EQ(a.GetInt(key.key), b.GetInt(key.key)) << key.key;
          break;
        case ConfigType::kBool:
          EXPECT_EQ(a.GetBool(key.key), b.GetBool(key.key)) << key.key;
          break;
        case ConfigType::kStringList:
          EXPECT_EQ(a.GetStringList(key.key), b.GetStringList(key.key)) << key.key;
          break;
        case ConfigType::kDuration:
          EXPECT_EQ(a.GetSeconds(key.key), b.GetSeconds(key.key)) << key.key;
          break;
      }
    }
  }
}

TEST(ConfigSectionArrayTest, ReferenceListsEveryKeyAndMarksTheRequiredOnes) {
  const std::string reference = RenderConfigReference();
  const std::size_t section_at = reference.find("\n## [[target]]\n");
  ASSERT_NE(section_at, std::string::npos);
  EXPECT_THAT(reference, HasSubstr("| `target.host` | string | required | yes |"));
  EXPECT_THAT(reference, HasSubstr("| `target.interval` | duration | `60` | yes |"));
  for (const ConfigKey& key : ConfigSectionArrays()[0].keys) {
    EXPECT_GT(reference.find("| `target." + std::string(key.key) + "` |"), section_at) << key.key;
  }
}

TEST(ConfigSectionArrayDeathTest, UnknownArrayOrKeyAborts) {
  EXPECT_DEATH(Config::Defaults().Entries("targets"), "targets");
  auto config = Config::Parse(kTwoTargets, "t.toml");
  ASSERT_TRUE(config.ok());
  EXPECT_DEATH(config->Entries("target")[0].GetInt("name"), "target.name");
}

}  // namespace
}  // namespace mailpulse
