// The daemon's settings from [probe] and [[target]]: defaults, every error naming file:line
// and key, duplicate names, and what a reload cannot change (probe/probe_config.h).
#include "probe/probe_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace mailpulse {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

StatusOr<ProbeSettings> Load(const std::string& text) {
  StatusOr<Config> config = Config::Parse(text, "p.toml");
  if (!config.ok()) return config.status();
  return LoadProbeSettings(*config);
}

std::string LoadError(const std::string& text) {
  StatusOr<ProbeSettings> s = Load(text);
  EXPECT_FALSE(s.ok()) << "loaded although an error was expected:\n" << text;
  return s.ok() ? "" : s.status().message();
}

constexpr char kTarget[] = "[[target]]\nname = \"mx1\"\nhost = \"192.0.2.1\"\nhelo = \"p.test\"\n";

TEST(ProbeConfigTest, TargetsGetTheirPlanIntervalAndThresholds) {
  StatusOr<ProbeSettings> s = Load(std::string(kTarget) +
                                   "tls = \"starttls\"\ninterval = \"30s\"\nwarn = 2\n"
                                   "[[target]]\nname = \"smtps\"\nhost = \"192.0.2.2\"\n"
                                   "tls = \"implicit\"\ncert_warn_days = -1\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->targets.size(), 2u);
  const ProbeTarget& mx1 = s->targets[0];
  EXPECT_EQ(mx1.name, "mx1");
  EXPECT_EQ(mx1.plan.target.ToString(), "192.0.2.1:25");
  EXPECT_EQ(mx1.plan.options.session.tls, TlsMode::kStartTls);
  EXPECT_DOUBLE_EQ(mx1.interval_seconds, 30);
  EXPECT_EQ(mx1.plan.thresholds.warn_seconds, 2.0);
  EXPECT_FALSE(mx1.plan.thresholds.crit_seconds.has_value());
  EXPECT_EQ(mx1.plan.thresholds.cert_warn_days, 21);
  EXPECT_EQ(mx1.plan.thresholds.cert_crit_days, 7);
  EXPECT_EQ(mx1.where, "p.toml:1");
  EXPECT_EQ(s->targets[1].plan.options.port, 465);
  EXPECT_FALSE(s->targets[1].plan.thresholds.cert_warn_days.has_value());
}

TEST(ProbeConfigTest, ProbeSectionDefaults) {
  StatusOr<ProbeSettings> s = Load("");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_FALSE(s->name.empty());  // the host name
  EXPECT_EQ(s->user, "mailpulse");
  ASSERT_TRUE(s->metrics_listen.has_value());
  EXPECT_EQ(s->metrics_listen->ToString(), "127.0.0.1:9798");
  ASSERT_TRUE(s->event_socket.has_value());
  EXPECT_EQ(s->event_socket->ToString(), "unix:/run/mailpulse/events.sock");
  EXPECT_FALSE(s->report_to.has_value());
  EXPECT_EQ(s->max_concurrent_checks, 64u);
  EXPECT_DOUBLE_EQ(s->jitter_fraction, 0.1);
  EXPECT_TRUE(s->targets.empty());
}

TEST(ProbeConfigTest, EmptyEndpointsTurnThingsOff) {
  StatusOr<ProbeSettings> s = Load("[probe]\nmetrics_listen = \"\"\nevent_socket = \"\"\n");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->metrics_listen.has_value());
  EXPECT_FALSE(s->event_socket.has_value());
}

TEST(ProbeConfigTest, BadTargetValuesNameTheLineAndKey) {
  EXPECT_EQ(LoadError(std::string(kTarget) + "tls = \"tsl\"\n"),
            "p.toml:5: target.tls: expected none, starttls or implicit, got 'tsl'");
  EXPECT_EQ(LoadError(std::string(kTarget) + "family = \"ipv5\"\n"),
            "p.toml:5: target.family: expected any, ipv4 or ipv6, got 'ipv5'");
  EXPECT_EQ(LoadError(std::string(kTarget) + "port = 70000\n"),
            "p.toml:5: target.port: must be 0 to 65535");
  EXPECT_THAT(LoadError(std::string(kTarget) + "send = true\nfrom = \"a b@x\"\nto = [\"c@d\"]\n"),
              StartsWith("p.toml:6: target.from: 'a b@x' contains a space"));
  EXPECT_THAT(LoadError(std::string(kTarget) + "send = true\n"),
              StartsWith("p.toml:1: target.to: a send check needs a recipient"));
  EXPECT_EQ(LoadError(std::string(kTarget) + "interval = 0\n"),
            "p.toml:5: target.interval: must be at least 1ms");
  EXPECT_EQ(LoadError(std::string(kTarget) + "timeout = 0\n"),
            "p.toml:5: target.timeout: must be more than 0 seconds");
}

TEST(ProbeConfigTest, TargetNamesMustBeLabelSafeAndUnique) {
  EXPECT_THAT(LoadError("[[target]]\nname = \"mx 1\"\nhost = \"h\"\n"),
              StartsWith("p.toml:2: target.name: 'mx 1' may hold only letters"));
  EXPECT_EQ(LoadError(std::string(kTarget) + "\n[[target]]\nname = \"mx1\"\nhost = \"h2\"\n"),
            "p.toml:7: target.name: 'mx1' is already the name of the target at p.toml:1");
}

TEST(ProbeConfigTest, AnUnreadableOrOpenPasswordFileNamesTheKey) {
  char path[] = "/tmp/mailpulse-probe-pw-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "secret\n";
  ASSERT_EQ(chmod(path, 0644), 0);
  const std::string text =
      std::string(kTarget) + "auth_user = \"u\"\nauth_password_file = \"" + path + "\"\n";
  EXPECT_THAT(LoadError(text),
              AllOf(StartsWith("p.toml:6: target.auth_password_file: password file"),
                    HasSubstr("readable by others"), ::testing::Not(HasSubstr("secret\n"))));
  ASSERT_EQ(chmod(path, 0600), 0);
  StatusOr<ProbeSettings> ok = Load(text);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->targets[0].plan.options.session.auth_password, "secret");
  std::remove(path);
  EXPECT_THAT(LoadError(std::string(kTarget) + "auth_user = \"u\"\n"),
              StartsWith("p.toml:1: target.auth_password_file: AUTH needs a password file"));
}

TEST(ProbeConfigTest, BadProbeValuesNameTheLineAndKey) {
  EXPECT_EQ(LoadError("[probe]\nmax_concurrent_checks = 0\n"),
            "p.toml:2: probe.max_concurrent_checks: must be 1 to 100000");
  EXPECT_EQ(LoadError("[probe]\njitter_percent = 80\n"),
            "p.toml:2: probe.jitter_percent: must be 0 to 50");
  EXPECT_THAT(LoadError("[probe]\nreport_to = \"somewhere\"\n"),
              StartsWith("p.toml:2: probe.report_to: "));
  EXPECT_EQ(LoadError("[probe]\nmetrics_listen = \"unix:/tmp/m.sock\"\n"),
            "p.toml:2: probe.metrics_listen: must be HOST:PORT");
  EXPECT_THAT(LoadError("[log]\nlevel = \"loud\"\n"), StartsWith("p.toml:2: log.level: "));
}

TEST(ProbeConfigTest, AReloadNamesTheSettingsThatNeedARestart) {
  StatusOr<ProbeSettings> a = Load("[probe]\nname = \"a\"\nmax_concurrent_checks = 3\n");
  StatusOr<ProbeSettings> b =
      Load("[probe]\nname = \"b\"\nmax_concurrent_checks = 9\nmetrics_listen = \"\"\n");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(SettingsNeedingRestart(*a, *b),
            (std::vector<std::string>{"probe.name", "probe.metrics_listen"}));
  EXPECT_TRUE(SettingsNeedingRestart(*a, *a).empty());
}

}  // namespace
}  // namespace mailpulse

namespace mailpulse {
namespace {

TEST(ProbeConfigTest, MxTargetsAndResolvers) {
  StatusOr<Config> config = Config::Parse(
      "[probe]\nresolvers = [\"127.0.0.1:5353\", \"[::1]:53\"]\n"
      "[[target]]\nname = \"domain\"\nhost = \"example.org\"\nmx = true\n",
      "p.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  StatusOr<ProbeSettings> s = LoadProbeSettings(*config);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->resolvers, (std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"}));
  EXPECT_TRUE(s->targets[0].plan.options.mx_lookup);
  StatusOr<Config> bad = Config::Parse("\n[probe]\nresolvers = [\"dns.example\"]\n", "p.toml");
  ASSERT_TRUE(bad.ok());
  StatusOr<ProbeSettings> refused = LoadProbeSettings(*bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message().rfind("p.toml:3: probe.resolvers: ", 0), 0u)
      << refused.status().message();
  StatusOr<Config> literal =
      Config::Parse("[[target]]\nname = \"d\"\nhost = \"192.0.2.1\"\nmx = true\n", "p.toml");
  ASSERT_TRUE(literal.ok());
  StatusOr<ProbeSettings> no_literal = LoadProbeSettings(*literal);
  ASSERT_FALSE(no_literal.ok());
  EXPECT_EQ(no_literal.status().message().rfind("p.toml:4: target.mx: ", 0), 0u)
      << no_literal.status().message();
}

}  // namespace
}  // namespace mailpulse
