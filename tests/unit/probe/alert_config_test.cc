#include "probe/alerts/alert_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace mailpulse {
namespace {

class AlertConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-alert-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    url_file_ = dir_ + "/hook.url";
    std::ofstream(url_file_) << "https://hooks.example.net/services/T0KEN\n";
    chmod(url_file_.c_str(), 0600);
  }
  void TearDown() override {
    unlink(url_file_.c_str());
    rmdir(dir_.c_str());
  }

  StatusOr<AlertSettings> Load(const std::string& text) {
    StatusOr<Config> config = Config::Parse(text, "alerts.toml");
    if (!config.ok()) return config.status();
    return LoadAlertSettings(*config);
  }
  std::string Notifier(const std::string& name = "oncall") const {
    return "[[notifier]]\nname = \"" + name + "\"\ntype = \"slack\"\nurl_file = \"" + url_file_ +
           "\"\n";
  }

  std::string dir_, url_file_;
};

TEST_F(AlertConfigTest, ARuleWithTiersAndANotifierLoad) {
  StatusOr<AlertSettings> s = Load(Notifier("oncall") + Notifier("lead") +
                                   "[[alert]]\nname = \"smtp-down\"\nwhen = \"check_failing\"\n"
                                   "match = \"mx*\"\nchecks = 3\nfor = \"1m\"\nclear = \"2m\"\n"
                                   "severity = \"critical\"\nnotify = [\"oncall\"]\n"
                                   "escalate = [\"15m lead\", \"1h lead, oncall\"]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->rules.size(), 1u);
  const AlertRuleSpec& r = s->rules[0];
  EXPECT_EQ(r.rule.name, "smtp-down");
  EXPECT_EQ(r.condition.signal, AlertSignal::kCheckFailing);
  EXPECT_EQ(r.condition.match, "mx*");
  EXPECT_EQ(r.condition.checks, 3);
  EXPECT_EQ(r.rule.for_seconds, 60);
  EXPECT_EQ(r.rule.clear_seconds, 120);
  EXPECT_EQ(r.rule.repeat_seconds, 4 * 3600);  // the default
  ASSERT_EQ(r.rule.tiers.size(), 3u);
  EXPECT_EQ(r.rule.tiers[1].after_seconds, 900);
  EXPECT_EQ(r.rule.tiers[2].notifiers, (std::vector<std::string>{"lead", "oncall"}));
  ASSERT_EQ(s->notifiers.size(), 2u);
  EXPECT_EQ(s->notifiers[0].kind, NotifierKind::kSlack);
  EXPECT_EQ(s->notifiers[0].url, "https://hooks.example.net/services/T0KEN");
}

TEST_F(AlertConfigTest, ErrorsNameTheFileAndLine) {
  const std::string rule = "[[alert]]\nname = \"r\"\nwhen = \"check_failing\"\n";
  EXPECT_EQ(Load(Notifier() + rule + "notify = [\"pager\"]\n").status().message(),
            "alerts.toml:8: alert.notify: no [[notifier]] named 'pager'");
  EXPECT_EQ(Load(Notifier() + "[[alert]]\nname = \"r\"\nwhen = \"check_fialing\"\n"
                              "notify = [\"oncall\"]\n")
                .status()
                .message(),
            "alerts.toml:7: alert.when: unknown signal 'check_fialing'; did you mean "
            "check_failing?");
  EXPECT_EQ(Load(Notifier() + rule + "notify = [\"oncall\"]\nescalate = [\"soon lead\"]\n")
                .status()
                .message()
                .substr(0, 34),
            "alerts.toml:9: alert.escalate: bad");
  EXPECT_EQ(Load(Notifier() + rule +
                 "notify = [\"oncall\"]\nescalate = [\"1h oncall\", "
                 "\"15m oncall\"]\n")
                .status()
                .message(),
            "alerts.toml:9: alert.escalate: tiers must come in increasing delay");
  EXPECT_EQ(Load(Notifier() + "[[alert]]\nname = \"slow\"\nwhen = \"latency\"\n"
                              "notify = [\"oncall\"]\n")
                .status()
                .message(),
            "alerts.toml:5: alert.over: this signal needs a threshold");
  EXPECT_EQ(Load(Notifier() + Notifier()).status().message(),
            "alerts.toml:6: notifier.name: a second notifier named 'oncall'");
  EXPECT_EQ(Load("[[notifier]]\nname = \"x\"\ntype = \"pager\"\n").status().message(),
            "alerts.toml:3: notifier.type: expected webhook, slack, mattermost, discord, teams, "
            "command or email, got 'pager'");
  EXPECT_EQ(Load("[[notifier]]\nname = \"x\"\ntype = \"command\"\ncommand = [\"notify\"]\n")
                .status()
                .message(),
            "alerts.toml:4: notifier.command: needs the program's absolute path first");
}

TEST_F(AlertConfigTest, AUrlFileOthersMayReadIsRefusedAndNeverQuoted) {
  chmod(url_file_.c_str(), 0644);
  const Status s = Load(Notifier()).status();
  EXPECT_NE(s.message().find("alerts.toml:4: notifier.url_file: "), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("readable by"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("T0KEN"), std::string::npos);
}

TEST_F(AlertConfigTest, AnEmailNotifierTakesHostPortAndDefaultsToSubmission) {
  StatusOr<AlertSettings> s = Load(
      "[[notifier]]\nname = \"mail\"\ntype = \"email\"\nserver = \"smtp.example.net\"\n"
      "to = [\"ops@example.net\"]\n[[notifier]]\nname = \"mail2\"\ntype = \"email\"\n"
      "server = \"smtp.example.net:465\"\ntls = \"implicit\"\nto = [\"ops@example.net\"]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->notifiers[0].server_host, "smtp.example.net");
  EXPECT_EQ(s->notifiers[0].server_port, 587);
  EXPECT_EQ(s->notifiers[1].server_port, 465);
  EXPECT_EQ(Load("[[notifier]]\nname = \"m\"\ntype = \"email\"\nserver = \"h:99999\"\n"
                 "to = [\"a@b\"]\n")
                .status()
                .message(),
            "alerts.toml:4: notifier.server: bad port '99999'");
}

TEST(RedactedUrlTest, KeepsOnlySchemeAndHost) {
  EXPECT_EQ(RedactedUrl("https://hooks.slack.com/services/T0/B1/XYZ"), "https://hooks.slack.com/…");
  EXPECT_EQ(RedactedUrl("http://user:pw@example.net:8080/x?token=1"), "http://example.net:8080/…");
  EXPECT_EQ(RedactedUrl("https://example.net"), "https://example.net");
  EXPECT_EQ(RedactedUrl("garbage"), "(url)");
}

}  // namespace
}  // namespace mailpulse
