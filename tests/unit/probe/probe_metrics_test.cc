// What one finished check leaves in /metrics, in the probe-result event and in the log
// (probe/probe_metrics.h, probe/probe_result.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "probe/probe_metrics.h"
#include "probe/probe_result.h"

namespace mailpulse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kNow = 1795500000;

CheckResult TlsSuccess() {
  CheckResult r;
  r.phase_seconds.fill(-1);
  for (Phase p : {Phase::kConnect, Phase::kBanner, Phase::kEhlo, Phase::kStartTls,
                  Phase::kTlsHandshake, Phase::kQuit}) {
    r.phase_seconds[static_cast<std::size_t>(p)] = 0.001;
  }
  r.outcome.reply_codes[static_cast<std::size_t>(Phase::kBanner)] = 220;
  r.outcome.reply_codes[static_cast<std::size_t>(Phase::kEhlo)] = 250;
  r.outcome.reply_codes[static_cast<std::size_t>(Phase::kStartTls)] = 220;
  r.outcome.reply_codes[static_cast<std::size_t>(Phase::kQuit)] = 221;
  r.total_seconds = 0.006;
  r.outcome.success = true;
  r.outcome.phase = Phase::kQuit;
  r.tls.established = true;
  r.tls.version = "TLSv1.3";
  r.tls.not_after_unix = kNow + 86400 * 30;
  r.address = "192.0.2.1:25";
  return r;
}

CheckResult RcptRejected() {
  CheckResult r;
  r.phase_seconds.fill(-1);
  for (Phase p : {Phase::kConnect, Phase::kBanner, Phase::kEhlo, Phase::kMail, Phase::kRcpt}) {
    r.phase_seconds[static_cast<std::size_t>(p)] = 0.002;
  }
  r.outcome.reply_codes[static_cast<std::size_t>(Phase::kRcpt)] = 550;
  r.total_seconds = 0.01;
  r.outcome.failure = FailureKind::kReplyPermanent;
  r.outcome.phase = Phase::kRcpt;
  SmtpReply reply;
  reply.code = 550;
  reply.enhanced_code = "5.1.1";
  reply.lines = {"5.1.1 <nobody@example.org>: Recipient address rejected"};
  r.outcome.reply = reply;
  r.address = "192.0.2.1:25";
  return r;
}

TEST(ProbeMetricsTest, ASuccessfulTlsCheckSetsEverySeries) {
  MetricsRegistry registry;
  ProbeMetrics metrics(&registry, "p1");
  const CheckResult r = TlsSuccess();
  const CheckVerdict v = JudgeCheck("mx", r, {}, false, kNow);
  metrics.RecordCheck("mx1", r, v, false, kNow);
  const std::string text = registry.RenderPrometheus();
  for (const char* line : {
           "mailpulse_probe_success{target=\"mx1\"} 1\n",
           "mailpulse_probe_duration_seconds{target=\"mx1\"} 0.006\n",
           "mailpulse_probe_phase_duration_seconds{target=\"mx1\",phase=\"tls_handshake\"} 0.001\n",
           "mailpulse_probe_checks_total{target=\"mx1\",result=\"success\"} 1\n",
           "mailpulse_probe_last_reply_code{target=\"mx1\",phase=\"starttls\"} 220\n",
           "mailpulse_probe_state{target=\"mx1\"} 0\n",
           "mailpulse_tls_cert_not_after_timestamp_seconds{target=\"mx1\"} 1.798092e+09\n",
           "mailpulse_tls_version_info{target=\"mx1\",version=\"TLSv1.3\"} 1\n",
           "mailpulse_probe_phase_seconds_count{target=\"mx1\",phase=\"ehlo\"} 1\n",
           "mailpulse_probe_build_info{version=\"" MAILPULSE_VERSION "\",probe=\"p1\"} 1\n",
       }) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  EXPECT_THAT(text, Not(HasSubstr("phase=\"mail\"")));  // not reached
}

TEST(ProbeMetricsTest, PhasesNotReachedInTheLastCheckDisappearFromTheLastCheckGauges) {
  MetricsRegistry registry;
  ProbeMetrics metrics(&registry, "p1");
  CheckResult ok = TlsSuccess();
  metrics.RecordCheck("mx1", ok, JudgeCheck("mx", ok, {}, false, kNow), false, kNow);
  CheckResult failed = RcptRejected();
  metrics.RecordCheck("mx1", failed, JudgeCheck("mx", failed, {}, false, kNow), false, kNow);
  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("mailpulse_probe_success{target=\"mx1\"} 0\n"));
  EXPECT_THAT(
      text,
      HasSubstr("mailpulse_probe_checks_total{target=\"mx1\",result=\"reply_permanent\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("mailpulse_probe_last_reply_code{target=\"mx1\",phase=\"rcpt\"} 550\n"));
  EXPECT_THAT(
      text,
      Not(HasSubstr("mailpulse_probe_phase_duration_seconds{target=\"mx1\",phase=\"quit\"}")));
  EXPECT_THAT(text,
              Not(HasSubstr("mailpulse_probe_last_reply_code{target=\"mx1\",phase=\"quit\"}")));
  // The histogram keeps every phase ever seen; the certificate stays known.
  EXPECT_THAT(text,
              HasSubstr("mailpulse_probe_phase_seconds_count{target=\"mx1\",phase=\"quit\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailpulse_tls_cert_not_after_timestamp_seconds{target=\"mx1\"}"));
  EXPECT_THAT(text, HasSubstr("mailpulse_probe_state{target=\"mx1\"} 2\n"));
}

TEST(ProbeMetricsTest, ConsecutiveFailuresCountUpAndASuccessResetsThem) {
  MetricsRegistry registry;
  ProbeMetrics metrics(&registry, "p1");
  const CheckResult ok = TlsSuccess(), failed = RcptRejected();
  const auto record = [&](const CheckResult& r) {
    metrics.RecordCheck("mx1", r, JudgeCheck("mx", r, {}, false, kNow), false, kNow);
  };
  record(failed);
  record(failed);
  EXPECT_THAT(registry.RenderPrometheus(),
              HasSubstr("mailpulse_probe_consecutive_failures{target=\"mx1\"} 2\n"));
  record(ok);
  EXPECT_THAT(registry.RenderPrometheus(),
              HasSubstr("mailpulse_probe_consecutive_failures{target=\"mx1\"} 0\n"));
  record(failed);
  EXPECT_THAT(registry.RenderPrometheus(),
              HasSubstr("mailpulse_probe_consecutive_failures{target=\"mx1\"} 1\n"));
}

TEST(ProbeMetricsTest, AForgottenTargetLeavesNoSeries) {
  MetricsRegistry registry;
  ProbeMetrics metrics(&registry, "p1");
  const CheckResult r = TlsSuccess();
  metrics.RecordCheck("mx1", r, JudgeCheck("mx", r, {}, false, kNow), false, kNow);
  metrics.RecordCheck("mx2", r, JudgeCheck("mx", r, {}, false, kNow), false, kNow);
  metrics.ForgetTarget("mx1");
  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(text, Not(HasSubstr("target=\"mx1\"")));
  EXPECT_THAT(text, HasSubstr("mailpulse_probe_success{target=\"mx2\"} 1\n"));
}

TEST(ProbeResultTest, TheEventCarriesTheVerdictThePhasesAndTheReply) {
  const CheckResult r = RcptRejected();
  const CheckVerdict v = JudgeCheck("192.0.2.1:25", r, {}, false, kNow);
  const FinishedCheck check{"p1", "mx1", kNow * 1000000, false, "abc", &r, &v};
  const proto::ProbeResult p = MakeProbeResult(check);
  EXPECT_EQ(p.source(), "p1");
  EXPECT_EQ(p.target(), "mx1");
  EXPECT_FALSE(p.success());
  EXPECT_EQ(p.result(), "reply_permanent");
  EXPECT_EQ(p.failed_phase(), "rcpt");
  EXPECT_EQ(p.reply_code(), 550);
  EXPECT_EQ(p.enhanced_code(), "5.1.1");
  EXPECT_EQ(p.reason(), "550 5.1.1 <nobody@example.org>: Recipient address rejected");
  EXPECT_EQ(p.state(), "CRITICAL");
  ASSERT_EQ(p.phases_size(), 5);
  EXPECT_EQ(p.phases(4).phase(), "rcpt");
  EXPECT_EQ(p.phases(4).reply_code(), 550);
  EXPECT_EQ(p.probe_id(), "abc");
}

TEST(ProbeResultTest, TheLogLineNamesTargetAddressStateAndReason) {
  const CheckResult r = RcptRejected();
  const CheckVerdict v = JudgeCheck("192.0.2.1:25", r, {}, false, kNow);
  const FinishedCheck check{"p1", "mx1", kNow * 1000000, false, "", &r, &v};
  EXPECT_EQ(CheckLogLine(check),
            "target mx1 (192.0.2.1:25): CRITICAL reply_permanent at rcpt: 550 5.1.1 "
            "<nobody@example.org>: Recipient address rejected in 10.000 ms");
}

}  // namespace
}  // namespace mailpulse
