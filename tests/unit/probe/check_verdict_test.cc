// The Nagios verdict and status line of a check, and certificate days (probe/check_verdict.h).
#include "probe/check_verdict.h"

#include <gtest/gtest.h>

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

TEST(FormatCheckReportTest, NamesTheMxHostNextToTheAddress) {
  CheckResult r = Healthy();
  r.address = "192.0.2.1:25";
  r.mx_host = "mx1.example.org";
  const std::string report = FormatCheckReport(r, false, true, kNow);
  EXPECT_EQ(report.rfind("mx host        mx1.example.org\naddress        192.0.2.1:25\n", 0), 0u)
      << report;
}

TEST(FormatCheckReportTest, NoMxHostLineWithoutMxLookup) {
  CheckResult r = Healthy();
  r.address = "192.0.2.1:25";
  EXPECT_EQ(FormatCheckReport(r, false, true, kNow).find("mx host"), std::string::npos);
}

}  // namespace
}  // namespace mailpulse
