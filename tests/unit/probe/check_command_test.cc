// The pure parts of `mailpulse-probe check`: the Nagios verdict and status line, certificate
// days, target parsing, the password file rules and the synthetic message.
#include "probe/check_command.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace mailpulse {
namespace {

constexpr std::int64_t kNow = 1795500000;  // 2026-11-24
constexpr std::int64_t kDay = 86400;

CheckResult Reached(std::initializer_list<std::pair<Phase, double>> phases) {
  CheckResult r;
  r.phase_seconds.fill(-1);
  for (const auto& [phase, seconds] : phases) {
    r.phase_seconds[static_cast<int>(phase)] = seconds;
    r.total_seconds += seconds;
  }
  r.outcome.success = true;
  r.outcome.phase = Phase::kQuit;
  return r;
}

CheckResult Healthy() {
  return Reached({{Phase::kConnect, 0.001},
                  {Phase::kBanner, 0.002},
                  {Phase::kEhlo, 0.003},
                  {Phase::kQuit, 0.001}});
}

TEST(JudgeCheckTest, HealthyCheckIsOkWithPerfdataForEveryReachedPhase) {
  CheckVerdict v = JudgeCheck("mx.example.com:25", Healthy(), {}, false, kNow);
  EXPECT_EQ(v.state, NagiosState::kOk);
  EXPECT_EQ(v.status_line.rfind("SMTP OK - mx.example.com:25 0.007s |", 0), 0u) << v.status_line;
  for (const char* phase : {"connect=", "banner=", "ehlo=", "quit=", "total="}) {
    EXPECT_NE(v.status_line.find(phase), std::string::npos) << phase;
  }
  EXPECT_EQ(v.status_line.find("mail="), std::string::npos) << "mail was not reached";
}

TEST(JudgeCheckTest, SlowTotalIsWarningThenCritical) {
  CheckThresholds t{0.005, 0.006, std::nullopt, std::nullopt};
  EXPECT_EQ(JudgeCheck("mx:25", Healthy(), t, false, kNow).state, NagiosState::kCritical);
  t.crit_seconds = 1;
  CheckVerdict v = JudgeCheck("mx:25", Healthy(), t, false, kNow);
  EXPECT_EQ(v.state, NagiosState::kWarning);
  EXPECT_EQ(v.status_line.rfind("SMTP WARNING - ", 0), 0u);
}

TEST(JudgeCheckTest, ServerReplyFailureIsCriticalWithKindPhaseAndTheReply) {
  CheckResult r = Healthy();
  r.outcome.success = false;
  r.outcome.failure = FailureKind::kReplyPermanent;
  r.outcome.phase = Phase::kRcpt;
  SmtpReply reply;
  reply.code = 550;
  reply.enhanced_code = "5.1.1";
  reply.lines = {"5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"};
  r.outcome.reply = reply;
  CheckVerdict v = JudgeCheck("mx:25", r, {}, false, kNow);
  EXPECT_EQ(v.state, NagiosState::kCritical);
  EXPECT_EQ(v.status_line.rfind("SMTP CRITICAL - reply_permanent at rcpt: 550 5.1.1 "
                                "<nobody@example.com>: Recipient address rejected: User unknown",
                                0),
            0u)
      << v.status_line;
}

TEST(JudgeCheckTest, CertificateDaysAgainstThresholds) {
  CheckResult r = Healthy();
  r.tls.established = true;
  r.tls.verified = true;
  r.tls.not_after_unix = kNow + 10 * kDay + 5;
  CheckThresholds t{std::nullopt, std::nullopt, 14, 7};
  CheckVerdict v = JudgeCheck("mx:25", r, t, false, kNow);
  EXPECT_EQ(v.state, NagiosState::kWarning) << v.status_line;
  EXPECT_NE(v.status_line.find("cert_days=10;14;7"), std::string::npos) << v.status_line;
  t.cert_crit_days = 10;
  EXPECT_EQ(JudgeCheck("mx:25", r, t, false, kNow).state, NagiosState::kCritical);
  t = {std::nullopt, std::nullopt, 5, 2};
  EXPECT_EQ(JudgeCheck("mx:25", r, t, false, kNow).state, NagiosState::kOk);
}

TEST(CertificateDaysLeftTest, RoundsDownAndGoesNegativeWhenExpired) {
  EXPECT_EQ(CertificateDaysLeft(kNow + 2 * kDay - 1, kNow), 1);
  EXPECT_EQ(CertificateDaysLeft(kNow + 2 * kDay, kNow), 2);
  EXPECT_LT(CertificateDaysLeft(kNow - kDay, kNow), 0);
}

TEST(ParseCheckTargetTest, DefaultPortHostPortAndIpv6) {
  auto a = ParseCheckTarget("mx.example.com", 25);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "mx.example.com");
  EXPECT_EQ(a->port, 25);
  auto b = ParseCheckTarget("mx.example.com:587", 25);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, 587);
  auto c = ParseCheckTarget("[2001:db8::1]:465", 25);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "2001:db8::1");
  EXPECT_EQ(c->port, 465);
  EXPECT_FALSE(ParseCheckTarget("mx.example.com:notaport", 25).ok());
  EXPECT_FALSE(ParseCheckTarget("", 25).ok());
}

class PasswordFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-pw-XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text, mode_t mode) {
    std::ofstream(path_) << text;
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
  }
  std::string path_;
};

TEST_F(PasswordFileTest, OwnerOnlyFileGivesThePasswordWithoutTheLineEnd) {
  Write("s3cret\r\n", 0600);
  auto pw = ReadPasswordFile(path_);
  ASSERT_TRUE(pw.ok()) << pw.status().message();
  EXPECT_EQ(*pw, "s3cret");
}

TEST_F(PasswordFileTest, FileReadableByGroupOrOthersIsRefusedWithoutShowingIt) {
  for (mode_t mode : {0640, 0604, 0644}) {
    Write("s3cret\n", mode);
    auto pw = ReadPasswordFile(path_);
    ASSERT_FALSE(pw.ok()) << std::oct << mode;
    EXPECT_NE(pw.status().message().find("readable by others"), std::string::npos);
    EXPECT_EQ(pw.status().message().find("s3cret"), std::string::npos);
  }
}

TEST_F(PasswordFileTest, MissingFileIsAnError) {
  EXPECT_FALSE(ReadPasswordFile(path_ + ".missing").ok());
}

TEST(ProbeMessageTest, HasTheHeadersAProbeMessageNeeds) {
  ProbeMessageFields f;
  f.from = "probe@example.com";
  f.to = {"sink@example.net"};
  f.domain = "probe.example.com";
  f.id = "0123456789abcdef0123456789abcdef";
  f.date = static_cast<std::time_t>(kNow);
  const std::string m = BuildProbeMessage(f);
  for (const char* header :
       {"Date: ", "From: ", "To: ", "Subject: mailpulse probe",
        "Message-ID: <0123456789abcdef0123456789abcdef.mailpulse@probe.example.com>"}) {
    EXPECT_NE(m.find(header), std::string::npos) << header << "\n" << m;
  }
  EXPECT_EQ(NewProbeId().size(), 32u);
  EXPECT_NE(NewProbeId(), NewProbeId());
}

}  // namespace
}  // namespace mailpulse
