// Round trips as timetables: Sent, sightings and bounces at given times (unix µs, written as
// seconds after kT0), and what the correlator makes of them (probe/correlator.h).
#include "probe/correlator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace mailpulse {
namespace {

using Kind = Correlator::ReportKind;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr std::int64_t kT0 = 1'767'225'600'000'000;  // 2026-01-01T00:00:00Z
constexpr std::string_view kProbe = "probe-a";
constexpr std::string_view kA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr std::string_view kB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr std::string_view kC = "cccccccccccccccccccccccccccccccc";

std::int64_t At(double seconds) { return kT0 + std::llround(seconds * 1e6); }

proto::HopSighting Seen(std::string_view id, std::string_view hop, double eom_seconds,
                        std::string_view queue_id) {
  proto::HopSighting s;
  s.set_probe_id(std::string(id));
  s.set_probe_source(std::string(kProbe));
  s.set_hop(std::string(hop));
  s.set_queue_id(std::string(queue_id));
  s.set_eom_unix_us(At(eom_seconds));
  return s;
}

proto::HopSighting Delivered(std::string_view id, std::string_view hop, double eom_seconds,
                             std::string_view queue_id) {
  proto::HopSighting s = Seen(id, hop, eom_seconds, queue_id);
  s.set_delivered(true);
  return s;
}

proto::ProbeBounce Bounce(std::string_view id, std::string_view hop, double seconds,
                          std::vector<std::string> statuses = {"5.1.1"}) {
  proto::ProbeBounce b;
  b.set_probe_id(std::string(id));
  b.set_probe_source(std::string(kProbe));
  b.set_hop(std::string(hop));
  b.set_queue_id("DSN1");
  b.set_time_unix_us(At(seconds));
  for (const std::string& status : statuses) {
    proto::BounceRecipient* r = b.add_recipients();
    r->set_final_recipient("sink-" + status + "@example.org");
    r->set_action("failed");
    r->set_status(status);
  }
  return b;
}

// Lost after 600 s, settled 2 s after the end, orphans held 60 s.
Correlator::Options Defaults() {
  Correlator::Options o;
  o.probe_name = std::string(kProbe);
  return o;
}

std::vector<std::string> HopNames(const Journey& j) {
  std::vector<std::string> names;
  for (const HopVisit& v : j.hops) names.push_back(v.hop);
  return names;
}

std::vector<std::string> Ids(const std::vector<Journey>& journeys) {
  std::vector<std::string> ids;
  for (const Journey& j : journeys) ids.push_back(j.probe_id);
  return ids;
}

// The finished journeys kept, newest first.
std::vector<std::string> HistoryIds(const Correlator& c) {
  std::vector<std::string> ids;
  for (const Journey& j : c.history()) ids.push_back(j.probe_id);
  return ids;
}

TEST(CorrelatorTest, AnInOrderTwoHopDeliveryFinishesSettleSecondsAfterTheSinkReports) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.25)), Kind::kHop);
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 1.0, "S1"), At(1.1)), Kind::kEnded);
  EXPECT_THAT(c.Expire(At(3.1) - 1), IsEmpty());
  const std::vector<Journey> done = c.Expire(At(3.1));
  ASSERT_EQ(done.size(), 1u);
  const Journey& j = done[0];
  EXPECT_EQ(j.probe_id, kA);
  EXPECT_EQ(j.target, "mx.example.org");
  EXPECT_EQ(j.queue_id, "4QX1");
  EXPECT_EQ(j.outcome, JourneyOutcome::kDelivered);
  EXPECT_THAT(HopNames(j), ElementsAre("edge", "sink"));
  EXPECT_EQ(j.delivered_hop, "sink");
  EXPECT_EQ(j.ended_unix_us, At(1.0));
  EXPECT_EQ(j.finished_unix_us, At(3.1));
  EXPECT_FALSE(j.evicted);
  EXPECT_EQ(c.pending(), 0u);
  ASSERT_EQ(c.history().size(), 1u);
  EXPECT_EQ(c.Find(kA), &c.history().front());
}

TEST(CorrelatorTest, HopsAreOrderedByTheirOwnTimeWhenTheMxReportsBeforeTheEdge) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "mx", 0.8, "M1"), At(0.9)), Kind::kEnded);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.3, "E1"), At(1.5)), Kind::kStraggler);
  const std::vector<Journey> done = c.Expire(At(2.9));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_THAT(HopNames(done[0]), ElementsAre("edge", "mx"));
  EXPECT_EQ(done[0].delivered_hop, "mx");
}

TEST(CorrelatorTest, ASightingBeforeSentIsHeldAndJoinsTheJourneyWhenSentComes) {
  Correlator c(Defaults());
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.1, "E1"), At(0.12)), Kind::kOrphan);
  EXPECT_EQ(c.orphans(), 1u);
  EXPECT_EQ(c.Find(kA), nullptr);
  c.Sent(kA, "mx.example.org", At(0.15), "4QX1");
  EXPECT_EQ(c.orphans(), 0u);
  ASSERT_NE(c.Find(kA), nullptr);
  EXPECT_THAT(HopNames(*c.Find(kA)), ElementsAre("edge"));
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 0.5, "S1"), At(0.6)), Kind::kEnded);
}

TEST(CorrelatorTest, ADeliveryBeforeSentSettlesFromWhenTheDeliveryArrived) {
  Correlator c(Defaults());
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 0.1, "S1"), At(0.2)), Kind::kOrphan);
  c.Sent(kA, "mx.example.org", At(0.3), "4QX1");
  EXPECT_EQ(c.Find(kA)->outcome, JourneyOutcome::kDelivered);
  EXPECT_EQ(c.NextDeadline(), At(2.2));
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.05, "E1"), At(1)), Kind::kStraggler);
  const std::vector<Journey> done = c.Expire(At(2.2));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_THAT(HopNames(done[0]), ElementsAre("edge", "sink"));
}

TEST(CorrelatorTest, ASecondSightingOfTheSameHopAndQueueIdIsADuplicate) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.3)), Kind::kHop);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.4)), Kind::kDuplicate);
  EXPECT_THAT(HopNames(*c.Find(kA)), ElementsAre("edge"));
  EXPECT_EQ(c.late_reports(), 0u);
}

TEST(CorrelatorTest, ADuplicateOrphanIsHeldOnce) {
  Correlator c(Defaults());
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.3)), Kind::kOrphan);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.4)), Kind::kDuplicate);
  EXPECT_EQ(c.orphans(), 1u);
  c.Sent(kA, "mx.example.org", At(0.5), "4QX1");
  EXPECT_THAT(HopNames(*c.Find(kA)), ElementsAre("edge"));
}

TEST(CorrelatorTest, TheSameHopWithAnotherQueueIdIsASecondVisit) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.25, "E1"), At(0.3)), Kind::kHop);
  EXPECT_EQ(c.OnSighting(Seen(kA, "relay", 0.5, "R1"), At(0.6)), Kind::kHop);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 1.0, "E2"), At(1.1)), Kind::kHop);
  EXPECT_THAT(HopLatencies(*c.Find(kA)),
              ElementsAre(Pair("edge", 0.25), Pair("relay", 0.25), Pair("edge", 0.5)));
}

TEST(CorrelatorTest, ALoopKeepsAHundredVisitsAndIgnoresTheRest) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(c.OnSighting(Seen(kA, "edge", i, "Q" + std::to_string(i)), At(i)), Kind::kHop);
  }
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 100, "Q100"), At(100)), Kind::kDuplicate);
  EXPECT_EQ(c.Find(kA)->hops.size(), 100u);
}

TEST(CorrelatorTest, LostExactlyAtTheDeadline) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.NextDeadline(), At(600));
  EXPECT_THAT(c.Expire(At(600) - 1), IsEmpty());
  const std::vector<Journey> done = c.Expire(At(600));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kLost);
  EXPECT_EQ(done[0].finished_unix_us, At(600));
  EXPECT_EQ(done[0].ended_unix_us, 0);
  EXPECT_FALSE(done[0].evicted);
  EXPECT_EQ(RoundTripSeconds(done[0]), std::nullopt);
}

TEST(CorrelatorTest, ADeliveryOneMicrosecondBeforeTheDeadlineCounts) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 599, "S1"), At(600) - 1), Kind::kEnded);
  EXPECT_THAT(c.Expire(At(600)), IsEmpty());  // settling, no longer subject to the deadline
  EXPECT_EQ(c.NextDeadline(), At(602) - 1);
}

TEST(CorrelatorTest, ADeliveryArrivingAtTheDeadlineIsLateEvenBeforeExpireRuns) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 599, "S1"), At(600)), Kind::kLate);
  const std::vector<Journey> done = c.Expire(At(600));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kLost);
  EXPECT_EQ(c.Find(kA)->late_reports, 1u);
}

TEST(CorrelatorTest, AReportAfterTheJourneyWasLostIsLateAndCountedOnIt) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  ASSERT_EQ(c.Expire(At(600)).size(), 1u);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 1, "E1"), At(700)), Kind::kLate);
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 650, "S1"), At(701)), Kind::kLate);
  EXPECT_EQ(c.OnBounce(Bounce(kA, "edge", 702), At(702)), Kind::kLate);
  const Journey* j = c.Find(kA);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->outcome, JourneyOutcome::kLost);
  EXPECT_THAT(j->hops, IsEmpty());
  EXPECT_EQ(j->late_reports, 3u);
  EXPECT_EQ(c.late_reports(), 3u);
  EXPECT_THAT(c.Expire(At(800)), IsEmpty());
}

TEST(CorrelatorTest, AStragglerAfterTheSettleTimeIsLate) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 1, "S1"), At(1)), Kind::kEnded);
  EXPECT_EQ(c.OnSighting(Seen(kA, "relay", 0.6, "R1"), At(3) - 1), Kind::kStraggler);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.3, "E1"), At(3)), Kind::kLate);
  const std::vector<Journey> done = c.Expire(At(3));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_THAT(HopNames(done[0]), ElementsAre("relay", "sink"));
  EXPECT_EQ(c.Find(kA)->late_reports, 1u);
  EXPECT_EQ(c.late_reports(), 1u);
}

TEST(CorrelatorTest, ABounceWithTwoRecipientsEndsTheJourneyAsBounced) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0.2, "E1"), At(0.3)), Kind::kHop);
  EXPECT_EQ(c.OnBounce(Bounce(kA, "edge", 4, {"5.1.1", "5.2.2"}), At(4.1)), Kind::kEnded);
  EXPECT_EQ(c.NextDeadline(), At(6.1));
  const std::vector<Journey> done = c.Expire(At(6.1));
  ASSERT_EQ(done.size(), 1u);
  const Journey& j = done[0];
  EXPECT_EQ(j.outcome, JourneyOutcome::kBounced);
  EXPECT_EQ(j.ended_unix_us, At(4));
  ASSERT_EQ(j.bounce.recipients_size(), 2);
  EXPECT_EQ(j.bounce.recipients(0).status(), "5.1.1");
  EXPECT_EQ(j.bounce.recipients(1).status(), "5.2.2");
  EXPECT_THAT(HopNames(j), ElementsAre("edge"));
  EXPECT_EQ(RoundTripSeconds(j), std::nullopt);
}

TEST(CorrelatorTest, TheSameBounceSeenAtASecondHopIsADuplicate) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnBounce(Bounce(kA, "mx", 4), At(4)), Kind::kEnded);
  EXPECT_EQ(c.OnBounce(Bounce(kA, "edge", 4.5), At(4.5)), Kind::kDuplicate);
  EXPECT_EQ(c.Find(kA)->bounce.hop(), "mx");
  EXPECT_EQ(c.late_reports(), 0u);
}

TEST(CorrelatorTest, ABounceAfterADeliveryIsLateAndTheDeliveryStands) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 1, "S1"), At(1)), Kind::kEnded);
  EXPECT_EQ(c.OnBounce(Bounce(kA, "edge", 1.5), At(1.5)), Kind::kLate);
  const std::vector<Journey> done = c.Expire(At(3));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kDelivered);
  EXPECT_EQ(done[0].late_reports, 1u);
}

TEST(CorrelatorTest, ADeliveryAfterABounceIsLateAndTheBounceStands) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  EXPECT_EQ(c.OnBounce(Bounce(kA, "edge", 1), At(1)), Kind::kEnded);
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 1.2, "S1"), At(1.5)), Kind::kLate);
  const std::vector<Journey> done = c.Expire(At(3));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kBounced);
  EXPECT_THAT(done[0].hops, IsEmpty());
  EXPECT_EQ(done[0].late_reports, 1u);
}

TEST(CorrelatorTest, AnotherProbesReportsAreForeignAndLeaveNoTrace) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  proto::HopSighting theirs = Delivered(kA, "sink", 1, "S1");
  theirs.set_probe_source("probe-b");
  proto::ProbeBounce their_bounce = Bounce(kB, "edge", 1);
  their_bounce.set_probe_source("probe-b");
  EXPECT_EQ(c.OnSighting(theirs, At(1)), Kind::kForeign);
  EXPECT_EQ(c.OnBounce(their_bounce, At(1)), Kind::kForeign);
  EXPECT_EQ(c.Find(kA)->outcome, JourneyOutcome::kPending);
  EXPECT_THAT(c.Find(kA)->hops, IsEmpty());
  EXPECT_EQ(c.orphans(), 0u);
}

TEST(CorrelatorTest, AnOrphanWhoseSentNeverComesExpiresAsAnOrphanNotAsALostJourney) {
  Correlator c(Defaults());
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0, "E1"), At(0)), Kind::kOrphan);
  EXPECT_EQ(c.NextDeadline(), At(60));
  EXPECT_THAT(c.Expire(At(60) - 1), IsEmpty());
  EXPECT_EQ(c.orphans(), 1u);
  EXPECT_THAT(c.Expire(At(60)), IsEmpty());
  EXPECT_EQ(c.orphans(), 0u);
  EXPECT_EQ(c.orphans_dropped(), 1u);
  EXPECT_EQ(c.NextDeadline(), std::nullopt);
  EXPECT_THAT(c.history(), IsEmpty());
}

TEST(CorrelatorTest, AnExpiredOrphanDoesNotJoinALateSent) {
  Correlator c(Defaults());
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0, "E1"), At(0)), Kind::kOrphan);
  c.Sent(kA, "mx.example.org", At(60), "4QX1");
  EXPECT_THAT(c.Find(kA)->hops, IsEmpty());
  EXPECT_EQ(c.orphans_dropped(), 1u);
}

TEST(CorrelatorTest, AnEarlierProbeDeliveredLateNeverSatisfiesTheNewerOne) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(60), "4QX2");
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 65, "S1"), At(70)), Kind::kEnded);
  EXPECT_EQ(c.Find(kA)->outcome, JourneyOutcome::kDelivered);
  EXPECT_EQ(c.Find(kB)->outcome, JourneyOutcome::kPending);
  EXPECT_THAT(c.Find(kB)->hops, IsEmpty());
  EXPECT_EQ(RoundTripSeconds(*c.Find(kA)), 65.0);
}

TEST(CorrelatorTest, AnEarlierProbeDeliveredAfterItWasLostIsLateAndTheNewerOneStillWaits) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(300), "4QX2");
  EXPECT_THAT(Ids(c.Expire(At(600))), ElementsAre(kA));
  EXPECT_EQ(c.OnSighting(Delivered(kA, "sink", 640, "S1"), At(650)), Kind::kLate);
  EXPECT_EQ(c.Find(kB)->outcome, JourneyOutcome::kPending);
  EXPECT_EQ(c.NextDeadline(), At(900));
}

TEST(CorrelatorTest, ASecondSentForAKnownIdIsIgnored) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kA, "other.example.org", At(10), "4QX9");
  EXPECT_EQ(c.Find(kA)->target, "mx.example.org");
  EXPECT_EQ(c.pending(), 1u);
  EXPECT_EQ(c.NextDeadline(), At(600));
}

TEST(CorrelatorTest, BeyondMaxPendingTheOldestIsFinishedAsLostAndFlagged) {
  Correlator::Options o = Defaults();
  o.max_pending = 2;
  Correlator c(o);
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(1), "4QX2");
  c.Sent(kC, "mx.example.org", At(2), "4QX3");
  EXPECT_EQ(c.pending(), 2u);
  EXPECT_EQ(c.NextDeadline(), At(2));  // the evicted one waits for Expire
  const std::vector<Journey> done = c.Expire(At(2));
  ASSERT_THAT(Ids(done), ElementsAre(kA));
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kLost);
  EXPECT_TRUE(done[0].evicted);
  EXPECT_EQ(done[0].finished_unix_us, At(2));
  EXPECT_EQ(c.NextDeadline(), At(601));
}

TEST(CorrelatorTest, BeyondMaxPendingAnEndedJourneyIsFinishedAsItEnded) {
  Correlator::Options o = Defaults();
  o.max_pending = 2;
  Correlator c(o);
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(1), "4QX2");
  EXPECT_EQ(c.OnSighting(Delivered(kB, "sink", 1.5, "S1"), At(1.5)), Kind::kEnded);
  c.Sent(kC, "mx.example.org", At(2), "4QX3");
  const std::vector<Journey> done = c.Expire(At(2));
  ASSERT_THAT(Ids(done), ElementsAre(kB));  // due soonest: it was settling
  EXPECT_EQ(done[0].outcome, JourneyOutcome::kDelivered);
  EXPECT_TRUE(done[0].evicted);
}

TEST(CorrelatorTest, TheHistoryKeepsTheNewestFinishedJourneys) {
  Correlator::Options o = Defaults();
  o.history = 2;
  Correlator c(o);
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(1), "4QX2");
  c.Sent(kC, "mx.example.org", At(2), "4QX3");
  EXPECT_THAT(Ids(c.Expire(At(602))), ElementsAre(kA, kB, kC));
  EXPECT_THAT(HistoryIds(c), ElementsAre(kC, kB));
  EXPECT_EQ(c.Find(kA), nullptr);
  // Forgotten: its report is an unknown id now, not a late one.
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 1, "E1"), At(603)), Kind::kOrphan);
  EXPECT_EQ(c.late_reports(), 0u);
}

TEST(CorrelatorTest, BeyondMaxOrphansTheOldestIsDropped) {
  Correlator::Options o = Defaults();
  o.max_orphans = 2;
  Correlator c(o);
  EXPECT_EQ(c.OnSighting(Seen(kA, "edge", 0, "E1"), At(0)), Kind::kOrphan);
  EXPECT_EQ(c.OnSighting(Seen(kB, "edge", 1, "E2"), At(1)), Kind::kOrphan);
  EXPECT_EQ(c.OnBounce(Bounce(kC, "edge", 2), At(2)), Kind::kOrphan);
  EXPECT_EQ(c.orphans(), 2u);
  EXPECT_EQ(c.orphans_dropped(), 1u);
  EXPECT_EQ(c.NextDeadline(), At(61));
  c.Sent(kA, "mx.example.org", At(3), "4QX1");
  c.Sent(kC, "mx.example.org", At(3), "4QX3");
  EXPECT_THAT(c.Find(kA)->hops, IsEmpty());
  EXPECT_EQ(c.Find(kC)->outcome, JourneyOutcome::kBounced);
}

TEST(CorrelatorTest, RoundTripAndHopLatenciesOfADeliveredJourney) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.OnSighting(Seen(kA, "edge", 0.25, "E1"), At(0.3));
  c.OnSighting(Seen(kA, "mx", 0.75, "M1"), At(0.8));
  c.OnSighting(Delivered(kA, "sink", 1.5, "S1"), At(1.6));
  const Journey& j = *c.Find(kA);
  EXPECT_EQ(RoundTripSeconds(j), 1.5);
  EXPECT_THAT(HopLatencies(j),
              ElementsAre(Pair("edge", 0.25), Pair("mx", 0.5), Pair("sink", 0.75)));
}

TEST(CorrelatorTest, HopLatenciesShowASkewedClockAsANegativeLatency) {
  Journey j;
  j.sent_unix_us = At(10);
  j.hops = {{"edge", At(9.5), "E1", "", false}, {"sink", At(11), "S1", "", true}};
  EXPECT_THAT(HopLatencies(j), ElementsAre(Pair("edge", -0.5), Pair("sink", 1.5)));
}

TEST(CorrelatorTest, WithoutSentThereIsNoRoundTripAndNoLatency) {
  Journey j;
  j.outcome = JourneyOutcome::kDelivered;
  j.ended_unix_us = At(1);
  j.hops = {{"sink", At(1), "S1", "", false}};
  EXPECT_EQ(RoundTripSeconds(j), std::nullopt);
  EXPECT_THAT(HopLatencies(j), IsEmpty());
}

TEST(CorrelatorTest, NextDeadlineFollowsEachStep) {
  Correlator c(Defaults());
  EXPECT_EQ(c.NextDeadline(), std::nullopt);
  c.OnSighting(Seen(kA, "edge", 0, "E1"), At(0));
  EXPECT_EQ(c.NextDeadline(), At(60));  // the orphan's expiry
  c.Sent(kA, "mx.example.org", At(1), "4QX1");
  EXPECT_EQ(c.NextDeadline(), At(601));  // the orphan joined; the journey's deadline
  c.Sent(kB, "mx.example.org", At(2), "4QX2");
  EXPECT_EQ(c.NextDeadline(), At(601));
  c.OnSighting(Delivered(kB, "sink", 3, "S1"), At(3));
  EXPECT_EQ(c.NextDeadline(), At(5));  // kB settles
  EXPECT_THAT(Ids(c.Expire(At(5))), ElementsAre(kB));
  EXPECT_EQ(c.NextDeadline(), At(601));
  EXPECT_THAT(Ids(c.Expire(At(601))), ElementsAre(kA));
  EXPECT_EQ(c.NextDeadline(), std::nullopt);
}

TEST(CorrelatorTest, ExpireReturnsJourneysInTheOrderTheyFinished) {
  Correlator c(Defaults());
  c.Sent(kA, "mx.example.org", At(0), "4QX1");
  c.Sent(kB, "mx.example.org", At(100), "4QX2");
  c.OnSighting(Delivered(kB, "sink", 101, "S1"), At(101));
  c.Sent(kC, "mx.example.org", At(200), "4QX3");
  EXPECT_THAT(Ids(c.Expire(At(900))), ElementsAre(kB, kA, kC));
  EXPECT_THAT(HistoryIds(c), ElementsAre(kC, kA, kB));
}

TEST(CorrelatorTest, OutcomesHaveLowerCaseNames) {
  EXPECT_EQ(JourneyOutcomeName(JourneyOutcome::kPending), "pending");
  EXPECT_EQ(JourneyOutcomeName(JourneyOutcome::kDelivered), "delivered");
  EXPECT_EQ(JourneyOutcomeName(JourneyOutcome::kBounced), "bounced");
  EXPECT_EQ(JourneyOutcomeName(JourneyOutcome::kLost), "lost");
}

}  // namespace
}  // namespace mailpulse
