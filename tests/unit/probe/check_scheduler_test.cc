// The probe's schedule as a timetable: intervals, jitter, the spread of first checks, the
// concurrency bound and reloads (probe/check_scheduler.h).
#include "probe/check_scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>

namespace mailpulse {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Random draws from a script, then 0.5 (no jitter, half the initial spread) forever.
CheckScheduler::Random Draws(std::deque<double> draws = {}) {
  return [draws]() mutable {
    if (draws.empty()) return 0.5;
    const double d = draws.front();
    draws.pop_front();
    return d;
  };
}

std::vector<std::string> Names(const std::vector<CheckScheduler::DueCheck>& due) {
  std::vector<std::string> names;
  for (const auto& d : due) names.push_back(d.name);
  return names;
}

TEST(CheckSchedulerTest, FirstChecksAreSpreadOverAtMostFiveSeconds) {
  CheckScheduler s(10, 0, Draws({0.0, 0.5, 0.99}));
  s.SetTargets({{"a", 60}, {"b", 60}, {"c", 2}}, 100);
  EXPECT_THAT(Names(s.TakeDue(100)), ElementsAre("a"));
  EXPECT_EQ(s.NextWake(), 101.98);  // c: 0.99 of its 2 s interval
  EXPECT_THAT(Names(s.TakeDue(102)), ElementsAre("c"));
  EXPECT_EQ(s.NextWake(), 102.5);  // b: half of 5 s
  EXPECT_THAT(Names(s.TakeDue(102.5)), ElementsAre("b"));
}

TEST(CheckSchedulerTest, NextCheckIsOneIntervalAfterTheLastWasDue) {
  CheckScheduler s(10, 0, Draws({0.0}));
  s.SetTargets({{"a", 30}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  EXPECT_TRUE(s.IsRunning("a"));
  EXPECT_EQ(s.NextWake(), std::nullopt);  // its only target is running
  s.Finished("a", 1.25);
  EXPECT_EQ(s.NextWake(), 30);
  EXPECT_THAT(s.TakeDue(29.9), IsEmpty());
  EXPECT_THAT(Names(s.TakeDue(30)), ElementsAre("a"));
}

TEST(CheckSchedulerTest, ATargetIsNeverCheckedTwiceAtOnce) {
  CheckScheduler s(10, 0, Draws({0.0}));
  s.SetTargets({{"a", 1}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  EXPECT_THAT(s.TakeDue(5), IsEmpty());  // still running, long overdue
  s.Finished("a", 5);
  // It overran four slots: the next check is one interval after it ended, not at once.
  EXPECT_EQ(s.NextWake(), 6);
}

TEST(CheckSchedulerTest, JitterStretchesAndShrinksEachIntervalWithinTheFraction) {
  CheckScheduler s(10, 0.1, Draws({0.0, 0.0, 1.0}));
  s.SetTargets({{"a", 100}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  s.Finished("a", 1);
  EXPECT_DOUBLE_EQ(*s.NextWake(), 90);  // draw 0.0: 10% shorter
  ASSERT_THAT(Names(s.TakeDue(90)), ElementsAre("a"));
  s.Finished("a", 91);
  EXPECT_DOUBLE_EQ(*s.NextWake(), 200);  // draw 1.0: 10% longer
}

TEST(CheckSchedulerTest, JitterIsCappedAtHalfTheInterval) {
  CheckScheduler s(10, 3.0, Draws({0.0, 0.0}));
  s.SetTargets({{"a", 100}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  s.Finished("a", 1);
  EXPECT_DOUBLE_EQ(*s.NextWake(), 50);
}

TEST(CheckSchedulerTest, TheConcurrencyBoundHoldsChecksBackEarliestDueFirst) {
  CheckScheduler s(2, 0, Draws({0.3, 0.2, 0.1, 0.0}));
  s.SetTargets({{"a", 10}, {"b", 10}, {"c", 10}, {"d", 10}}, 0);
  const auto due = s.TakeDue(5);
  EXPECT_THAT(Names(due), ElementsAre("d", "c"));
  EXPECT_DOUBLE_EQ(due[0].late_seconds, 5);
  EXPECT_EQ(s.running(), 2u);
  EXPECT_EQ(s.NextWake(), std::nullopt);  // bound reached: wake when one finishes
  s.Finished("c", 6);
  EXPECT_THAT(Names(s.TakeDue(6)), ElementsAre("b"));
  s.Finished("d", 7);
  const auto late = s.TakeDue(7);
  ASSERT_THAT(Names(late), ElementsAre("a"));
  EXPECT_DOUBLE_EQ(late[0].late_seconds, 7 - 0.3 * 5);
}

TEST(CheckSchedulerTest, AReloadKeepsTheScheduleOfKnownTargetsAndForgetsRemovedOnes) {
  CheckScheduler s(10, 0, Draws({0.0, 0.0}));
  s.SetTargets({{"a", 60}, {"b", 60}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a", "b"));
  s.Finished("a", 1);
  s.SetTargets({{"a", 60}, {"c", 60}}, 10);  // b removed while running, c new
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.running(), 0u);
  s.Finished("b", 11);            // the removed target's check ends: ignored
  EXPECT_EQ(s.NextWake(), 12.5);  // c, half of its 5 s spread
  EXPECT_THAT(Names(s.TakeDue(12.5)), ElementsAre("c"));
  EXPECT_THAT(Names(s.TakeDue(60)), ElementsAre("a"));  // a kept its slot
}

TEST(CheckSchedulerTest, AShorterIntervalOnReloadPullsTheNextCheckIn) {
  CheckScheduler s(10, 0, Draws({0.0, 0.25}));
  s.SetTargets({{"a", 3600}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  s.Finished("a", 1);
  s.SetTargets({{"a", 60}}, 100);
  EXPECT_EQ(s.NextWake(), 115);  // within one new interval of the reload
}

TEST(CheckSchedulerTest, ARunningCheckSurvivesAReloadThatKeepsItsTarget) {
  CheckScheduler s(1, 0, Draws({0.0}));
  s.SetTargets({{"a", 60}}, 0);
  ASSERT_THAT(Names(s.TakeDue(0)), ElementsAre("a"));
  s.SetTargets({{"a", 30}, {"b", 30}}, 1);
  EXPECT_TRUE(s.IsRunning("a"));
  EXPECT_EQ(s.running(), 1u);
  EXPECT_THAT(s.TakeDue(10), IsEmpty());  // the bound of one is taken by a
  s.Finished("a", 10);
  EXPECT_THAT(Names(s.TakeDue(10)), ElementsAre("b"));
}

}  // namespace
}  // namespace mailpulse
