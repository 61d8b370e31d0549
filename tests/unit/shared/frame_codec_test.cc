// Framing of the event socket: the decoder must accept any split of the byte stream and turn
// every kind of garbage into a clear error without crashing or over-allocating.
#include "shared/frame_codec.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

// Largest single operator-new request while tracking is on; lets a test prove that a hostile
// length prefix does not make the decoder allocate the announced size.
std::atomic<bool> g_track_allocations{false};
std::atomic<std::size_t> g_largest_allocation{0};

}  // namespace

void* operator new(std::size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (size > seen && !g_largest_allocation.compare_exchange_weak(seen, size)) {
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// Out of line so GCC's -Wmismatched-new-delete does not see free() paired with operator new
// after inlining; both halves of the replacement use malloc/free, so they do match.
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace mailpulse {
namespace {

// Records the largest allocation made during its lifetime.
class AllocationTracker {
 public:
  AllocationTracker() {
    g_largest_allocation = 0;
    g_track_allocations = true;
  }
  ~AllocationTracker() { g_track_allocations = false; }
  std::size_t largest() const { return g_largest_allocation; }
};

proto::Event SampleSnapshot() {
  proto::Event event;
  proto::TrafficSnapshot* snapshot = event.mutable_traffic_snapshot();
  snapshot->set_source("mx1.example.org");
  snapshot->set_time_unix_us(1'700'000'000'123'456);
  snapshot->set_start_unix_us(1'699'999'000'000'000);
  snapshot->mutable_inbound()->set_connections(1200);
  snapshot->mutable_inbound()->set_tls_connections(1100);
  snapshot->mutable_inbound()->set_messages(950);
  snapshot->mutable_inbound()->set_recipients(1010);
  snapshot->mutable_inbound()->set_bytes(73'000'000'000);
  snapshot->mutable_outbound()->set_messages(42);
  snapshot->mutable_local()->set_aborts(3);
  proto::RejectCount* reject = snapshot->add_rejects();
  reject->set_direction("inbound");
  reject->set_stage("rcpt");
  reject->set_status("5.7.1");
  reject->set_count(17);
  snapshot->set_events_dropped(2);
  return event;
}

// Three frames of different shapes: a real event, an empty frame and a 300-byte payload whose
// length needs a two-byte varint.
std::string SampleStream() {
  std::string stream;
  AppendEventFrame(SampleSnapshot(), &stream);
  AppendFrame("", &stream);
  AppendFrame(std::string(300, 'x'), &stream);
  return stream;
}

std::vector<std::string> SampleFrames() {
  return {SampleSnapshot().SerializeAsString(), "", std::string(300, 'x')};
}

// Encodes independently of AppendFrame so tests can build prefixes AppendFrame never writes.
std::string Varint(std::uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

TEST(FrameCodecTest, AppendFrameWritesVarintLengthThenPayload) {
  std::string out = "prefix";
  AppendFrame(std::string(300, 'a'), &out);
  ASSERT_EQ(out.size(), 6u + 2u + 300u);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(out.substr(6, 2), "\xac\x02");
  EXPECT_EQ(out.substr(8), std::string(300, 'a'));
}

TEST(FrameCodecTest, EventFrameRoundTripsThroughDecoderAndParser) {
  std::string stream;
  AppendEventFrame(SampleSnapshot(), &stream);
  FrameDecoder decoder;
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed(stream, &frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  StatusOr<proto::Event> event = ParseEvent(frames[0]);
  ASSERT_TRUE(event.ok()) << event.status().message();
  EXPECT_EQ(event->SerializeAsString(), SampleSnapshot().SerializeAsString());
}

TEST(FrameCodecTest, TrafficSnapshotFieldsSurviveRoundTrip) {
  std::string stream;
  AppendEventFrame(SampleSnapshot(), &stream);
  // Skip the one-or-two-byte length prefix by decoding rather than guessing its size.
  FrameDecoder decoder;
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed(stream, &frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  StatusOr<proto::Event> event = ParseEvent(frames[0]);
  ASSERT_TRUE(event.ok()) << event.status().message();
  ASSERT_TRUE(event->has_traffic_snapshot());
  const proto::TrafficSnapshot& snapshot = event->traffic_snapshot();
  EXPECT_EQ(snapshot.source(), "mx1.example.org");
  EXPECT_EQ(snapshot.time_unix_us(), 1'700'000'000'123'456);
  EXPECT_EQ(snapshot.inbound().bytes(), 73'000'000'000u);
  EXPECT_EQ(snapshot.outbound().messages(), 42u);
  EXPECT_EQ(snapshot.local().aborts(), 3u);
  ASSERT_EQ(snapshot.rejects_size(), 1);
  EXPECT_EQ(snapshot.rejects(0).status(), "5.7.1");
  EXPECT_EQ(snapshot.rejects(0).count(), 17u);
  EXPECT_EQ(snapshot.events_dropped(), 2u);
}

TEST(FrameCodecTest, ParseEventOfEmptyPayloadIsAnEmptyEvent) {
  StatusOr<proto::Event> event = ParseEvent("");
  ASSERT_TRUE(event.ok());
  EXPECT_FALSE(event->has_traffic_snapshot());
}

TEST(FrameCodecTest, ParseEventRejectsGarbage) {
  // A length-delimited field 1 announcing 5 bytes but carrying 2, a field number 0, and a
  // varint that never terminates.
  for (std::string_view garbage :
       {std::string_view("\x0a\x05"
                         "ab",
                         4),
        std::string_view("\x00", 1), std::string_view("\x08\xff\xff\xff", 4)}) {
    StatusOr<proto::Event> event = ParseEvent(garbage);
    ASSERT_FALSE(event.ok());
    EXPECT_NE(event.status().message().find("not a valid mailpulse.proto.Event"),
              std::string::npos);
  }
}

TEST(FrameDecoderTest, DecodesSeveralFramesFromOneFeed) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed(SampleStream(), &frames).ok());
  EXPECT_EQ(frames, SampleFrames());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoderTest, DecodesStreamSplitInTwoAtEveryBytePosition) {
  const std::string stream = SampleStream();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameDecoder decoder;
    std::vector<std::string> frames;
    ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(0, cut), &frames).ok());
    ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(cut), &frames).ok());
    EXPECT_EQ(frames, SampleFrames()) << "cut at " << cut;
    EXPECT_EQ(decoder.buffered(), 0u);
  }
}

TEST(FrameDecoderTest, DecodesStreamSplitInThreeAtEveryPairOfPositions) {
  const std::string stream = SampleStream();
  const std::string_view view(stream);
  for (std::size_t first = 0; first <= stream.size(); ++first) {
    for (std::size_t second = first; second <= stream.size(); ++second) {
      FrameDecoder decoder;
      std::vector<std::string> frames;
      ASSERT_TRUE(decoder.Feed(view.substr(0, first), &frames).ok());
      ASSERT_TRUE(decoder.Feed(view.substr(first, second - first), &frames).ok());
      ASSERT_TRUE(decoder.Feed(view.substr(second), &frames).ok());
      ASSERT_EQ(frames, SampleFrames()) << "cuts at " << first << " and " << second;
    }
  }
}

TEST(FrameDecoderTest, DecodesStreamFedOneByteAtATime) {
  const std::string stream = SampleStream();
  FrameDecoder decoder;
  std::vector<std::string> frames;
  for (char byte : stream) {
    ASSERT_TRUE(decoder.Feed(std::string_view(&byte, 1), &frames).ok());
  }
  EXPECT_EQ(frames, SampleFrames());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoderTest, ZeroLengthFrameIsDeliveredAsAnEmptyEvent) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed(std::string_view("\x00", 1), &frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].empty());
  EXPECT_TRUE(ParseEvent(frames[0]).ok());
}

TEST(FrameDecoderTest, CountsPrefixAndPayloadOfIncompleteFrameAsBuffered) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  std::string stream;
  AppendFrame(std::string(300, 'y'), &stream);  // two-byte prefix
  ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(0, 1), &frames).ok());
  EXPECT_EQ(decoder.buffered(), 1u);
  ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(1, 11), &frames).ok());
  EXPECT_EQ(decoder.buffered(), 12u);
  EXPECT_TRUE(frames.empty());
}

TEST(FrameDecoderTest, AcceptsFrameOfExactlyTheMaximumSize) {
  constexpr std::size_t kMax = 4096;
  std::string stream;
  AppendFrame(std::string(kMax, 'm'), &stream);
  FrameDecoder decoder(kMax);
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(0, 100), &frames).ok());
  ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(100), &frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], std::string(kMax, 'm'));
}

TEST(FrameDecoderTest, RejectsFrameOneByteOverTheMaximumWithoutAllocatingIt) {
  FrameDecoder decoder;
  const std::string stream = Varint(kDefaultMaxFrameSize + 1) + std::string(1000, 'z');
  std::vector<std::string> frames;
  Status status;
  {
    AllocationTracker tracker;
    status = decoder.Feed(stream, &frames);
    EXPECT_LT(tracker.largest(), 1000u);
  }
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "frame length 1048577 exceeds maximum 1048576");
  EXPECT_TRUE(decoder.failed());
  EXPECT_EQ(decoder.buffered(), 0u);
  EXPECT_TRUE(frames.empty());
}

TEST(FrameDecoderTest, NeverAllocatesMoreThanTheMaximumForAFrameArrivingInPieces) {
  FrameDecoder decoder;
  const std::string stream = Varint(kDefaultMaxFrameSize) + std::string(kDefaultMaxFrameSize, 'p');
  std::vector<std::string> frames;
  AllocationTracker tracker;
  for (std::size_t offset = 0; offset < stream.size(); offset += 4093) {
    ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(offset, 4093), &frames).ok());
  }
  ASSERT_EQ(frames.size(), 1u);
  // +1 for the string's terminating NUL.
  EXPECT_LE(tracker.largest(), kDefaultMaxFrameSize + 1);
}

TEST(FrameDecoderTest, NamesAnnouncedLengthAndLimitWhenFrameIsTooLarge) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  Status status = decoder.Feed(Varint(5'000'000), &frames);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "frame length 5000000 exceeds maximum 1048576");
}

TEST(FrameDecoderTest, RejectsVarintLongerThanFiveBytes) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  Status status = decoder.Feed("\x80\x80\x80\x80\x80\x01", &frames);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "malformed length prefix: varint longer than 5 bytes");
}

TEST(FrameDecoderTest, RejectsOverLongVarintSplitAcrossFeeds) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(decoder.Feed("\xff", &frames).ok());
  Status status = decoder.Feed("\xff", &frames);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "malformed length prefix: varint longer than 5 bytes");
}

TEST(FrameDecoderTest, RejectsLengthThatDoesNotFitIn32Bits) {
  FrameDecoder decoder(SIZE_MAX);
  std::vector<std::string> frames;
  Status status = decoder.Feed(Varint(std::uint64_t{1} << 32), &frames);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "malformed length prefix: value does not fit in 32 bits");
}

TEST(FrameDecoderTest, AcceptsTheLargest32BitLengthWhenTheLimitAllowsIt) {
  FrameDecoder decoder(SIZE_MAX);
  std::vector<std::string> frames;
  ASSERT_TRUE(decoder.Feed("\xff\xff\xff\xff\x0f", &frames).ok());
  EXPECT_EQ(decoder.buffered(), 5u);
  EXPECT_FALSE(decoder.failed());
}

TEST(FrameDecoderTest, StaysFailedAndIgnoresEverythingAfterAnError) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  ASSERT_FALSE(decoder.Feed("\x80\x80\x80\x80\x80", &frames).ok());
  std::string valid;
  AppendFrame("hello", &valid);
  Status status = decoder.Feed(valid, &frames);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), "malformed length prefix: varint longer than 5 bytes");
  EXPECT_TRUE(decoder.failed());
  EXPECT_TRUE(frames.empty());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoderTest, KeepsFramesCompletedBeforeTheGarbageInTheSameFeed) {
  FrameDecoder decoder;
  std::vector<std::string> frames;
  std::string stream;
  AppendFrame("ok", &stream);
  stream += Varint(kDefaultMaxFrameSize + 1);
  ASSERT_FALSE(decoder.Feed(stream, &frames).ok());
  EXPECT_EQ(frames, std::vector<std::string>{"ok"});
}

}  // namespace
}  // namespace mailpulse
