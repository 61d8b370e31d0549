#include "probe/alert_signals.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailpulse {
namespace {

AlertRuleSpec Spec(const std::string& name, AlertSignal signal) {
  AlertRuleSpec s;
  s.rule.name = name;
  s.rule.tiers = {{0, {"n"}}};
  s.condition.signal = signal;
  return s;
}

CheckResult Refused() {
  CheckResult r;
  r.outcome.success = false;
  r.outcome.failure = FailureKind::kConnectionRefused;
  r.outcome.phase = Phase::kConnect;
  r.outcome.detail = "127.0.0.1:25: Connection refused";
  r.address = "127.0.0.1:25";
  r.phase_seconds.fill(-1);
  return r;
}

CheckResult Ok(double total = 0.2, std::int64_t not_after = 0) {
  CheckResult r;
  r.outcome.success = true;
  r.phase_seconds.fill(-1);
  r.phase_seconds[static_cast<std::size_t>(Phase::kBanner)] = 0.15;
  r.total_seconds = total;
  r.tls.not_after_unix = not_after;
  return r;
}

// "rule subject bad|good" for each observation.
std::vector<std::string> Seen(const std::vector<Observation>& os) {
  std::vector<std::string> out;
  for (const Observation& o : os)
    out.push_back(o.rule + " " + o.subject + (o.bad ? " bad" : " good"));
  return out;
}

TEST(AlertSignalsTest, FailingChecksAreBadOnlyFromTheNthInARowAndGoodOnlyOnASuccess) {
  AlertRuleSpec down = Spec("down", AlertSignal::kCheckFailing);
  down.condition.checks = 3;
  AlertSignals s({down});
  const CheckVerdict v;
  EXPECT_TRUE(s.OnCheck("mx1", Refused(), v, 0).empty());
  EXPECT_TRUE(s.OnCheck("mx1", Refused(), v, 0).empty());  // neither bad nor good yet
  const std::vector<Observation> third = s.OnCheck("mx1", Refused(), v, 0);
  ASSERT_EQ(Seen(third), std::vector<std::string>{"down mx1 bad"});
  EXPECT_EQ(third[0].summary, "mx1: 127.0.0.1:25: Connection refused (3 failed checks in a row)");
  EXPECT_EQ(third[0].details[0], (std::pair<std::string, std::string>{"phase", "connect"}));
  EXPECT_EQ(Seen(s.OnCheck("mx2", Refused(), v, 0)), std::vector<std::string>{});  // its own count
  EXPECT_EQ(Seen(s.OnCheck("mx1", Ok(), v, 0)), std::vector<std::string>{"down mx1 good"});
}

TEST(AlertSignalsTest, LatencyOfAPhaseOrTheTotalAgainstItsThreshold) {
  AlertRuleSpec total = Spec("slow", AlertSignal::kLatency);
  total.condition.over_seconds = 1;
  AlertRuleSpec banner = Spec("slow-banner", AlertSignal::kLatency);
  banner.condition.phase = "banner";
  banner.condition.over_seconds = 0.1;
  banner.condition.match = "mx*";
  AlertSignals s({total, banner});
  const CheckVerdict v;
  EXPECT_EQ(Seen(s.OnCheck("mx1", Ok(0.2), v, 0)),
            (std::vector<std::string>{"slow mx1 good", "slow-banner mx1 bad"}));
  EXPECT_EQ(Seen(s.OnCheck("mx1", Ok(2.5), v, 0))[0], "slow mx1 bad");
  EXPECT_EQ(Seen(s.OnCheck("relay", Ok(0.2), v, 0)), std::vector<std::string>{"slow relay good"});
  EXPECT_TRUE(s.OnCheck("other", Refused(), v, 0).empty());  // a failed check has no latency
}

TEST(AlertSignalsTest, ACertificateExpiringWithinTheDaysIsBad) {
  AlertRuleSpec cert = Spec("cert", AlertSignal::kCertificateExpiry);
  cert.condition.days = 14;
  AlertSignals s({cert});
  const std::int64_t now = 1'800'000'000;
  const std::vector<Observation> soon = s.OnCheck("mx1", Ok(0.2, now + 3 * 86400 + 10), {}, now);
  ASSERT_EQ(Seen(soon), std::vector<std::string>{"cert mx1 bad"});
  EXPECT_EQ(soon[0].summary, "mx1: certificate expires in 3 days");
  EXPECT_EQ(Seen(s.OnCheck("mx1", Ok(0.2, now + 90 * 86400), {}, now)),
            std::vector<std::string>{"cert mx1 good"});
  EXPECT_TRUE(s.OnCheck("mx1", Ok(0.2, 0), {}, now).empty());  // no certificate this time
}

TEST(AlertSignalsTest, JourneysLostOrBouncedAndSlowHops) {
  AlertRuleSpec lost = Spec("lost", AlertSignal::kRoundtripLost);
  AlertRuleSpec bounced = Spec("bounced", AlertSignal::kRoundtripBounced);
  AlertRuleSpec hop = Spec("hop", AlertSignal::kHopLatency);
  hop.condition.over_seconds = 1;
  AlertSignals s({lost, bounced, hop});
  Journey j;
  j.probe_id = "abc";
  j.target = "rt";
  j.sent_unix_us = 1'000'000;
  j.hops = {{"edge", 1'200'000, "Q1", "", false}, {"mx", 3'700'000, "Q2", "", true}};
  j.outcome = JourneyOutcome::kLost;
  const std::vector<Observation> on_loss = s.OnJourney(j);
  EXPECT_EQ(Seen(on_loss), (std::vector<std::string>{"lost rt bad", "bounced rt good"}));
  EXPECT_EQ(on_loss[0].summary, "rt: probe message abc lost; last seen at mx");
  j.outcome = JourneyOutcome::kDelivered;
  j.ended_unix_us = 3'700'000;
  EXPECT_EQ(Seen(s.OnJourney(j)), (std::vector<std::string>{"lost rt good", "bounced rt good",
                                                            "hop edge good", "hop mx bad"}));
  j.outcome = JourneyOutcome::kBounced;
  j.bounce.set_hop("mx");
  proto::BounceRecipient* r = j.bounce.add_recipients();
  r->set_status("5.1.1");
  const std::vector<Observation> on_bounce = s.OnJourney(j);
  EXPECT_EQ(Seen(on_bounce)[1], "bounced rt bad");
  EXPECT_EQ(on_bounce[1].summary, "rt: probe message abc bounced at mx (5.1.1)");
}

TEST(AlertSignalsTest, QueuesSpikesAndSilentMilters) {
  AlertRuleSpec deferred = Spec("deferred", AlertSignal::kQueueMessages);
  deferred.condition.messages = 100;
  AlertRuleSpec old = Spec("old", AlertSignal::kQueueAge);
  old.condition.queue = "hold";
  old.condition.over_seconds = 3600;
  AlertRuleSpec spike = Spec("spike", AlertSignal::kOutboundSpike);
  AlertRuleSpec silent = Spec("silent", AlertSignal::kMilterSilent);
  silent.condition.over_seconds = 30;
  AlertSignals s({deferred, old, spike, silent});

  proto::Event queue;
  proto::QueueStatus* q = queue.mutable_queue_status();
  q->set_source("mx1");
  q->set_ok(true);
  proto::QueueCount* c = q->add_queues();
  c->set_queue("deferred");
  c->set_messages(150);
  c = q->add_queues();
  c->set_queue("hold");
  c->set_messages(1);
  c->set_oldest_age_seconds(100);
  EXPECT_EQ(Seen(s.OnEvent(queue, 1000)),
            (std::vector<std::string>{"deferred mx1/deferred bad", "old mx1/hold good"}));
  q->set_ok(false);  // an unreadable queue says nothing about its size
  EXPECT_TRUE(s.OnEvent(queue, 1001).empty());

  proto::Event started;
  proto::OutboundSpike* sp = started.mutable_outbound_spike();
  sp->set_source("mx1");
  sp->set_started(true);
  sp->set_key_kind("sasl_login");
  sp->set_key("flood@example.net");
  sp->set_messages_per_minute(600);
  const std::vector<Observation> on_spike = s.OnEvent(started, 1002);
  ASSERT_EQ(Seen(on_spike), std::vector<std::string>{"spike mx1/sasl_login flood@example.net bad"});
  EXPECT_EQ(on_spike[0].summary,
            "mx1: outbound spike from sasl_login flood@example.net: 600 messages/min (baseline "
            "0.0)");
  sp->set_started(false);
  EXPECT_EQ(Seen(s.OnEvent(started, 1003)),
            std::vector<std::string>{"spike mx1/sasl_login flood@example.net good"});

  // Silent: only milters heard from at least once; bad once quiet for longer than `over`.
  EXPECT_EQ(Seen(s.OnTick(1030)), std::vector<std::string>{"silent mx1 good"});
  EXPECT_EQ(Seen(s.OnTick(1034)), std::vector<std::string>{"silent mx1 bad"});
}

}  // namespace
}  // namespace mailpulse
