#include "probe/alerts/alert_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailpulse {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr double kT0 = 1'800'000'000;  // Unix seconds: the engine never reads a clock

AlertRule Rule(const std::string& name = "smtp-down") {
  AlertRule r;
  r.name = name;
  r.severity = "critical";
  r.flap_changes = 0;
  r.tiers = {{0, {"oncall"}}};
  return r;
}

Observation Bad(const std::string& subject = "mx1", const std::string& summary = "refused") {
  return {"smtp-down", subject, true, summary, {{"phase", "connect"}}};
}
Observation Good(const std::string& subject = "mx1") {
  return {"smtp-down", subject, false, "", {}};
}

// "kind:notifier,notifier" for each notice, to compare sequences at a glance.
std::vector<std::string> Told(const std::vector<Notice>& notices) {
  std::vector<std::string> out;
  for (const Notice& n : notices) {
    std::string s = std::string(NoticeKindName(n.kind)) + ":";
    for (std::size_t i = 0; i < n.notifiers.size(); ++i) s += (i ? "," : "") + n.notifiers[i];
    out.push_back(s);
  }
  return out;
}

// Feeds `o` at every second from `from` to `to` (inclusive), ticking after each, and returns
// every notice told with the second it came at.
std::vector<std::pair<double, std::string>> Replay(AlertEngine& e, const Observation& o,
                                                   double from, double to) {
  std::vector<std::pair<double, std::string>> out;
  for (double t = from; t <= to; t += 1) {
    e.Observe(o, t);
    for (const std::string& s : Told(e.Tick(t))) out.emplace_back(t - kT0, s);
  }
  return out;
}

TEST(AlertEngineTest, FiresAfterForOnceWithItsDetailsAndResolvesAfterClear) {
  AlertRule rule = Rule();
  rule.for_seconds = 30;
  rule.clear_seconds = 60;
  AlertEngine e;
  e.SetRules({rule});
  // Bad every second for 40 s: one notice, at 30 s, however many observations (dedup).
  EXPECT_THAT(Replay(e, Bad(), kT0, kT0 + 40),
              ElementsAre(std::pair<double, std::string>{30, "firing:oncall"}));
  std::vector<Alert> alerts = e.Alerts();
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].id, "smtp-down/mx1");
  EXPECT_EQ(alerts[0].state, AlertState::kFiring);
  EXPECT_EQ(alerts[0].summary, "refused");
  EXPECT_EQ(alerts[0].since, kT0);
  // Good for 59 s, bad once (hysteresis: still firing, nothing told), then good for 60 s.
  EXPECT_THAT(Replay(e, Good(), kT0 + 41, kT0 + 100), IsEmpty());
  EXPECT_EQ(e.Alerts()[0].state, AlertState::kClearing);
  EXPECT_THAT(Replay(e, Bad(), kT0 + 101, kT0 + 101), IsEmpty());
  EXPECT_EQ(e.Alerts()[0].state, AlertState::kFiring);
  const auto told = Replay(e, Good(), kT0 + 102, kT0 + 170);
  EXPECT_THAT(told, ElementsAre(std::pair<double, std::string>{162, "resolved:oncall"}));
  EXPECT_THAT(e.Alerts(), IsEmpty());
}

TEST(AlertEngineTest, ABadSpellShorterThanForNeverTellsAnyone) {
  AlertRule rule = Rule();
  rule.for_seconds = 30;
  AlertEngine e;
  e.SetRules({rule});
  EXPECT_THAT(Replay(e, Bad(), kT0, kT0 + 29), IsEmpty());
  EXPECT_THAT(Replay(e, Good(), kT0 + 30, kT0 + 40), IsEmpty());
  EXPECT_THAT(e.Alerts(), IsEmpty());
  // And the next bad spell starts its own `for` from scratch.
  EXPECT_THAT(Replay(e, Bad(), kT0 + 41, kT0 + 70), IsEmpty());
  EXPECT_THAT(Replay(e, Bad(), kT0 + 71, kT0 + 71),
              ElementsAre(std::pair<double, std::string>{71, "firing:oncall"}));
}

TEST(AlertEngineTest, EachSubjectIsItsOwnAlert) {
  AlertEngine e;
  e.SetRules({Rule()});
  e.Observe(Bad("mx1"), kT0);
  e.Observe(Bad("mx2"), kT0);
  e.Observe(Bad("mx1"), kT0 + 1);
  const std::vector<Notice> told = e.Tick(kT0 + 1);
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[0].alert.subject, "mx1");
  EXPECT_EQ(told[1].alert.subject, "mx2");
  EXPECT_EQ(told[0].alert.details, (AlertDetails{{"phase", "connect"}}));
}

TEST(AlertEngineTest, RepeatsUntilAcknowledgedOrResolved) {
  AlertRule rule = Rule();
  rule.repeat_seconds = 3600;
  AlertEngine e;
  e.SetRules({rule});
  e.Observe(Bad(), kT0);
  EXPECT_THAT(Told(e.Tick(kT0)), ElementsAre("firing:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 3599)), IsEmpty());
  EXPECT_THAT(Told(e.Tick(kT0 + 3600)), ElementsAre("repeat:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 7199)), IsEmpty());
  EXPECT_THAT(Told(e.Tick(kT0 + 7200)), ElementsAre("repeat:oncall"));
  ASSERT_TRUE(e.Ack("smtp-down/mx1", "alice", kT0 + 7300).ok());
  EXPECT_EQ(e.Alerts()[0].acked_by, "alice");
  EXPECT_THAT(Told(e.Tick(kT0 + 20000)), IsEmpty());
  e.Observe(Good(), kT0 + 20001);
  EXPECT_THAT(Told(e.Tick(kT0 + 20001)), ElementsAre("resolved:oncall"));
  EXPECT_FALSE(e.Ack("smtp-down/mx1", "alice", kT0 + 20002).ok());
  EXPECT_EQ(e.Ack("nope/x", "bob", kT0).message(), "no firing alert nope/x");
}

TEST(AlertEngineTest, EscalatesTierByTierWithoutAnAckAndResolvesToEveryTierTold) {
  AlertRule rule = Rule();
  rule.tiers = {{0, {"oncall"}}, {15 * 60, {"lead"}}, {60 * 60, {"lead", "manager"}}};
  AlertEngine e;
  e.SetRules({rule});
  e.Observe(Bad(), kT0);
  EXPECT_THAT(Told(e.Tick(kT0)), ElementsAre("firing:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 15 * 60 - 1)), IsEmpty());
  EXPECT_THAT(Told(e.Tick(kT0 + 15 * 60)), ElementsAre("escalated:lead"));
  EXPECT_EQ(e.Alerts()[0].tier, 1u);
  EXPECT_THAT(Told(e.Tick(kT0 + 60 * 60)), ElementsAre("escalated:lead,manager"));
  e.Observe(Good(), kT0 + 60 * 60 + 5);
  EXPECT_THAT(Told(e.Tick(kT0 + 60 * 60 + 5)), ElementsAre("resolved:oncall,lead,manager"));
}

TEST(AlertEngineTest, AnAckBeforeTheNextTierStopsTheEscalation) {
  AlertRule rule = Rule();
  rule.tiers = {{0, {"oncall"}}, {15 * 60, {"lead"}}};
  AlertEngine e;
  e.SetRules({rule});
  e.Observe(Bad(), kT0);
  EXPECT_THAT(Told(e.Tick(kT0)), ElementsAre("firing:oncall"));
  ASSERT_TRUE(e.Ack("smtp-down/mx1", "oncall-bob", kT0 + 600).ok());
  EXPECT_THAT(Told(e.Tick(kT0 + 3600)), IsEmpty());
  e.Observe(Good(), kT0 + 3601);
  EXPECT_THAT(Told(e.Tick(kT0 + 3601)), ElementsAre("resolved:oncall"));
  // Firing again later is a new alert: escalation starts over, the old ack does not carry.
  e.Observe(Bad(), kT0 + 7200);
  EXPECT_THAT(Told(e.Tick(kT0 + 7200)), ElementsAre("firing:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 7200 + 15 * 60)), ElementsAre("escalated:lead"));
}

TEST(AlertEngineTest, AFlappingAlertIsToldOnceThenOnlyWhereItSettles) {
  AlertRule rule = Rule();
  rule.flap_changes = 4;
  rule.flap_window_seconds = 600;
  AlertEngine e;
  e.SetRules({rule});
  std::vector<std::string> told;
  // Up and down every minute: fire, resolve, fire, resolve (4 changes), fire, resolve ...
  for (int minute = 0; minute < 8; ++minute) {
    const double t = kT0 + minute * 60;
    e.Observe(minute % 2 == 0 ? Bad() : Good(), t);
    for (const std::string& s : Told(e.Tick(t))) told.push_back(std::to_string(minute) + " " + s);
  }
  EXPECT_THAT(told, ElementsAre("0 firing:oncall", "1 resolved:oncall", "2 firing:oncall",
                                "3 flapping:oncall"));
  EXPECT_THAT(e.Alerts(), IsEmpty());  // resolved while flapping: not listed
  // It stays down (good) for a whole window after its last change at minute 7: told once.
  EXPECT_THAT(Told(e.Tick(kT0 + 7 * 60 + 599)), IsEmpty());
  EXPECT_THAT(Told(e.Tick(kT0 + 7 * 60 + 600)), ElementsAre("resolved:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 9000)), IsEmpty());
}

TEST(AlertEngineTest, AFlappingAlertThatSettlesFiringIsToldFiring) {
  AlertRule rule = Rule();
  rule.flap_changes = 3;
  rule.flap_window_seconds = 300;
  AlertEngine e;
  e.SetRules({rule});
  e.Observe(Bad(), kT0);
  e.Observe(Good(), kT0 + 10);
  e.Observe(Bad(), kT0 + 20);
  EXPECT_THAT(Told(e.Tick(kT0 + 20)),
              ElementsAre("firing:oncall", "resolved:oncall", "flapping:oncall"));
  for (double t = kT0 + 21; t < kT0 + 320; t += 1) e.Observe(Bad(), t);
  EXPECT_THAT(Told(e.Tick(kT0 + 319)), IsEmpty());
  EXPECT_THAT(Told(e.Tick(kT0 + 320)), ElementsAre("firing:oncall"));
  EXPECT_FALSE(e.Alerts()[0].flapping);
}

TEST(AlertEngineTest, ASilenceHoldsBackFiringAndTellsWhatIsStillTrueWhenItEnds) {
  AlertRule rule = Rule();
  rule.repeat_seconds = 600;
  AlertEngine e;
  e.SetRules({rule});
  Silence s;
  s.rule_glob = "smtp-*";
  s.subject_glob = "mx1";
  s.until = kT0 + 3600;
  s.comment = "maintenance";
  EXPECT_EQ(e.AddSilence(s, kT0), "s1");
  e.Observe(Bad("mx1"), kT0 + 10);
  e.Observe(Bad("mx2"), kT0 + 10);  // not matched by the silence
  const std::vector<Notice> told = e.Tick(kT0 + 10);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].alert.subject, "mx2");
  e.Observe(Good("mx2"), kT0 + 20);
  EXPECT_THAT(Told(e.Tick(kT0 + 20)), ElementsAre("resolved:oncall"));
  EXPECT_THAT(Told(e.Tick(kT0 + 1800)), IsEmpty());  // no repeat inside the silence either
  ASSERT_EQ(e.Silences(kT0 + 1800).size(), 1u);
  EXPECT_THAT(Told(e.Tick(kT0 + 3600)), ElementsAre("firing:oncall"));  // still down after it
  EXPECT_THAT(e.Silences(kT0 + 3600), IsEmpty());
}

TEST(AlertEngineTest, AResolvedNoticeIsNeverHeldBackAndASilenceCanBeLifted) {
  AlertEngine e;
  e.SetRules({Rule()});
  e.Observe(Bad(), kT0);
  EXPECT_THAT(Told(e.Tick(kT0)), ElementsAre("firing:oncall"));
  const std::string id = e.AddSilence({"", "*", "*", kT0 + 7200, "", "alice"}, kT0 + 1);
  e.Observe(Good(), kT0 + 2);
  EXPECT_THAT(Told(e.Tick(kT0 + 2)), ElementsAre("resolved:oncall"));
  e.Observe(Bad(), kT0 + 3);
  EXPECT_THAT(Told(e.Tick(kT0 + 3)), IsEmpty());
  ASSERT_TRUE(e.RemoveSilence(id).ok());
  EXPECT_THAT(Told(e.Tick(kT0 + 4)), ElementsAre("firing:oncall"));
  EXPECT_FALSE(e.RemoveSilence(id).ok());
  // A silenced alert that resolves before the silence ends was never told: nothing to say.
  e.AddSilence({"", "*", "*", kT0 + 7200, "", ""}, kT0 + 5);
  e.Observe(Bad("mx9"), kT0 + 6);
  e.Observe(Good("mx9"), kT0 + 7);
  EXPECT_THAT(Told(e.Tick(kT0 + 7)), IsEmpty());
}

TEST(AlertEngineTest, StateSurvivesARestartWithoutTellingTwice) {
  AlertRule rule = Rule();
  rule.tiers = {{0, {"oncall"}}, {900, {"lead"}}};
  AlertEngine before;
  before.SetRules({rule});
  before.Observe(Bad("mx1"), kT0);
  before.Observe(Bad("mx2"), kT0);
  EXPECT_EQ(before.Tick(kT0).size(), 2u);
  ASSERT_TRUE(before.Ack("smtp-down/mx2", "alice", kT0 + 10).ok());
  before.AddSilence({"", "smtp-down", "mx3", kT0 + 5000, "disk swap", "bob"}, kT0 + 20);
  const std::string state = before.SaveState();

  AlertEngine after;
  after.SetRules({rule});
  ASSERT_TRUE(after.LoadState(state, kT0 + 100).ok());
  ASSERT_EQ(after.Alerts().size(), 2u);
  EXPECT_EQ(after.Alerts()[1].acked_by, "alice");
  ASSERT_EQ(after.Silences(kT0 + 100).size(), 1u);
  EXPECT_EQ(after.Silences(kT0 + 100)[0].comment, "disk swap");
  after.Observe(Bad("mx1"), kT0 + 101);  // still down: no second firing notice
  EXPECT_THAT(Told(after.Tick(kT0 + 101)), IsEmpty());
  // Escalation goes on from the original firing time; the acknowledged one stays quiet.
  EXPECT_THAT(Told(after.Tick(kT0 + 900)), ElementsAre("escalated:lead"));
  after.Observe(Good("mx1"), kT0 + 901);
  EXPECT_THAT(Told(after.Tick(kT0 + 901)), ElementsAre("resolved:oncall,lead"));
  after.Observe(Bad("mx3"), kT0 + 902);
  EXPECT_THAT(Told(after.Tick(kT0 + 902)), IsEmpty());  // the silence came along

  EXPECT_FALSE(after.LoadState("{not json", kT0).ok());
  EXPECT_FALSE(after.LoadState(R"({"version": 7})", kT0).ok());
  EXPECT_EQ(after.Alerts().size(), 2u);  // a bad file changes nothing: mx2 and mx3
}

TEST(AlertEngineTest, ARuleThatIsGoneTakesItsAlertsWithItAndObservationsOfItAreIgnored) {
  AlertEngine e;
  e.SetRules({Rule("smtp-down"), Rule("cert")});
  e.Observe(Bad(), kT0);
  e.Observe({"cert", "mx1", true, "expires in 3 days", {}}, kT0);
  EXPECT_EQ(e.Tick(kT0).size(), 2u);
  e.SetRules({Rule("cert")});
  ASSERT_EQ(e.Alerts().size(), 1u);
  EXPECT_EQ(e.Alerts()[0].rule, "cert");
  e.Observe(Bad(), kT0 + 1);
  EXPECT_THAT(e.Tick(kT0 + 1), IsEmpty());
}

TEST(GlobMatchTest, StarMatchesAnyRun) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "anything"));
  EXPECT_TRUE(GlobMatch("mx*", "mx1.example.net"));
  EXPECT_TRUE(GlobMatch("*.example.net", "mx1.example.net"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(GlobMatch("mx1", "mx1"));
  EXPECT_FALSE(GlobMatch("mx1", "mx10"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXbYY"));
  EXPECT_FALSE(GlobMatch("", "x"));
}

}  // namespace
}  // namespace mailpulse
