// The replay guard and the hop stamp (shared/probe_token.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "shared/probe_token.h"

namespace mailpulse {
namespace {

constexpr std::int64_t kAge = 100;

TEST(ReplayGuardTest, SecondSightingWithinTheAgeIsAReplayAndAfterItIsNot) {
  ReplayGuard guard;
  EXPECT_TRUE(guard.FirstSighting("id1", "mx1", 1000, kAge));
  EXPECT_FALSE(guard.FirstSighting("id1", "mx1", 1000, kAge));
  EXPECT_FALSE(guard.FirstSighting("id1", "mx1", 1000 + kAge, kAge));
  EXPECT_TRUE(guard.FirstSighting("id1", "mx1", 1000 + kAge + 1, kAge));
  // Remembered again from that sighting.
  EXPECT_FALSE(guard.FirstSighting("id1", "mx1", 1000 + 2 * kAge + 1, kAge));
}

TEST(ReplayGuardTest, SameIdAtAnotherHopIsAFirstSighting) {
  ReplayGuard guard;
  EXPECT_TRUE(guard.FirstSighting("id1", "mx1", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("id1", "mx2", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("id2", "mx1", 1000, kAge));
  EXPECT_EQ(guard.size(), 3u);
}

TEST(ReplayGuardTest, IdAndHopAreNotConfusedWhereTheyMeet) {
  ReplayGuard guard;
  EXPECT_TRUE(guard.FirstSighting("ab", "c", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("a", "bc", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("a/b", "c", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("a", "b/c", 1000, kAge));
}

TEST(ReplayGuardTest, ExpiredEntriesAreDropped) {
  ReplayGuard guard;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(guard.FirstSighting(std::to_string(i), "mx1", i, kAge));
  EXPECT_EQ(guard.size(), 10u);
  EXPECT_TRUE(guard.FirstSighting("late", "mx1", 5 + kAge, kAge));  // 0..4 are older than kAge
  EXPECT_EQ(guard.size(), 6u);
  EXPECT_EQ(guard.evicted(), 0u);
}

TEST(ReplayGuardTest, BeyondItsBoundTheOldestIsForgottenAndCounted) {
  ReplayGuard guard(3);
  for (const char* id : {"a", "b", "c", "d"}) EXPECT_TRUE(guard.FirstSighting(id, "mx1", 1, kAge));
  EXPECT_EQ(guard.size(), 3u);
  EXPECT_EQ(guard.evicted(), 1u);
  EXPECT_FALSE(guard.FirstSighting("d", "mx1", 2, kAge));
  EXPECT_FALSE(guard.FirstSighting("c", "mx1", 2, kAge));
  EXPECT_FALSE(guard.FirstSighting("b", "mx1", 2, kAge));
  EXPECT_TRUE(guard.FirstSighting("a", "mx1", 2, kAge));  // forgotten, so not known as a replay
  EXPECT_EQ(guard.evicted(), 2u);                         // ... and "b" went for it
  EXPECT_TRUE(guard.FirstSighting("b", "mx1", 2, kAge));
  EXPECT_EQ(guard.size(), 3u);
}

TEST(ReplayGuardTest, BoundOfZeroStillRemembersOne) {
  ReplayGuard guard(0);
  EXPECT_TRUE(guard.FirstSighting("a", "mx1", 1, kAge));
  EXPECT_FALSE(guard.FirstSighting("a", "mx1", 1, kAge));
  EXPECT_EQ(guard.size(), 1u);
}

TEST(ReplayGuardTest, ClockSteppedBackDoesNotForgetAnEntryEarly) {
  ReplayGuard guard;
  EXPECT_TRUE(guard.FirstSighting("a", "mx1", 1000, kAge));
  EXPECT_TRUE(guard.FirstSighting("b", "mx1", 0, kAge));  // counts as seen at 1000
  EXPECT_FALSE(guard.FirstSighting("b", "mx1", 1000 + kAge, kAge));
  EXPECT_FALSE(guard.FirstSighting("a", "mx1", 1000 + kAge, kAge));
}

TEST(ReplayGuardTest, ConcurrentSightingsHaveExactlyOneWinnerPerKey) {
  constexpr int kThreads = 8;
  constexpr int kKeys = 2000;
  ReplayGuard guard(kKeys);
  std::vector<std::atomic<int>> wins(kKeys);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
      }
      for (int i = 0; i < kKeys; ++i) {
        const int k = (i + t * 250) % kKeys;  // threads start at different keys
        if (guard.FirstSighting(std::to_string(k), "mx1", 1000 + i, 1'000'000)) wins[k]++;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int k = 0; k < kKeys; ++k) ASSERT_EQ(wins[k].load(), 1) << "key " << k;
  EXPECT_EQ(guard.size(), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(guard.evicted(), 0u);
}

TEST(HopStampTest, StampParsesBackToItsFields) {
  const std::string stamp = HopStamp("mx1.example.org", 1'795'500'000'123'456, "4XyZ1b2C3dz");
  EXPECT_EQ(stamp, "hop=mx1.example.org; t=1795500000123456; qid=4XyZ1b2C3dz");
  StatusOr<HopStampFields> fields = ParseHopStamp(stamp);
  ASSERT_TRUE(fields.ok()) << fields.status().message();
  EXPECT_EQ(fields->hop, "mx1.example.org");
  EXPECT_EQ(fields->time_unix_us, 1'795'500'000'123'456);
  EXPECT_EQ(fields->queue_id, "4XyZ1b2C3dz");
}

TEST(HopStampTest, FoldedReorderedStampWithUnknownFieldsParses) {
  StatusOr<HopStampFields> fields =
      ParseHopStamp(" QID = 1pQ2xS-0001Fh-Qn;\r\n\tx=y;\n Hop=mx2; T=7 ;");
  ASSERT_TRUE(fields.ok()) << fields.status().message();
  EXPECT_EQ(fields->hop, "mx2");
  EXPECT_EQ(fields->time_unix_us, 7);
  EXPECT_EQ(fields->queue_id, "1pQ2xS-0001Fh-Qn");
}

TEST(HopStampTest, HostileValuesAreMadeSafeAndStillParse) {
  const std::string stamp =
      HopStamp("mx1\r\nBcc: victim@example.com", -5, std::string(100, 'q') + "; hop=evil");
  EXPECT_EQ(stamp.find_first_of("\r\n\t"), std::string::npos);
  EXPECT_EQ(std::count(stamp.begin(), stamp.end(), ';'), 2);
  EXPECT_EQ(stamp.find("hop=evil"), std::string::npos);
  StatusOr<HopStampFields> fields = ParseHopStamp(stamp);
  ASSERT_TRUE(fields.ok()) << fields.status().message() << "\n" << stamp;
  EXPECT_EQ(fields->hop, "mx1__Bcc:_victim_example.com");
  EXPECT_EQ(fields->time_unix_us, 0);
  EXPECT_EQ(fields->queue_id, std::string(64, 'q'));
  StatusOr<HopStampFields> empty = ParseHopStamp(HopStamp("", 1, ""));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->hop, "-");
  EXPECT_EQ(empty->queue_id, "-");
}

TEST(HopStampTest, MalformedStampsAreErrors) {
  for (const std::string& value :
       {std::string(""), std::string("hop=mx1; t=1"), std::string("hop=mx1; t=1; qid=Q; hop=mx2"),
        std::string("hop=mx 1; t=1; qid=Q"), std::string("hop=mx1; t=-1; qid=Q"),
        std::string("hop=mx1; t=1; qid=") + std::string(65, 'q'),
        std::string("hop=mx1; t=1; qid=Q\r\nBcc: x"), std::string("hop=mx<1>; t=1; qid=Q"),
        "hop=mx1; t=1; qid=Q; pad=" + std::string(1024, 'x')}) {
    SCOPED_TRACE(testing::PrintToString(value));
    StatusOr<HopStampFields> fields = ParseHopStamp(value);
    ASSERT_FALSE(fields.ok());
    EXPECT_EQ(fields.status().message().rfind("hop stamp", 0), 0u) << fields.status().message();
  }
}

}  // namespace
}  // namespace mailpulse
