// Reading what a UID FETCH returns: the items of the response and the probe message in its
// header section.
#include "probe/imap/probe_message.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailpulse {
namespace {

using ::testing::ElementsAre;

constexpr char kId[] = "0123456789abcdef0123456789abcdef";

ImapResponse Fetch(std::string_view bytes) {
  ImapResponseParser parser;
  std::vector<ImapResponse> rs;
  EXPECT_TRUE(parser.Feed(bytes, &rs).ok());
  EXPECT_EQ(rs.size(), 1u);
  return rs.empty() ? ImapResponse{} : rs[0];
}

TEST(ProbeMessageTest, FetchItemsInAnyOrderAndQuotedSection) {
  auto f = ReadFetchedHeaders(
      Fetch("* 4 FETCH (FLAGS (\\Seen) BODY[HEADER.FIELDS (X-MAILPULSE-PROBE)] \"a: b\" "
            "UID 12)\r\n"));
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->uid, 12u);
  EXPECT_EQ((*f)->header_section, "a: b");
}

TEST(ProbeMessageTest, FetchWithoutUidOrSectionIsNotOurs) {
  const auto flags = ReadFetchedHeaders(Fetch("* 4 FETCH (FLAGS (\\Seen))\r\n"));
  ASSERT_TRUE(flags.ok());
  EXPECT_FALSE(flags->has_value());
  const auto nil = ReadFetchedHeaders(Fetch("* 4 FETCH (UID 3 BODY[HEADER.FIELDS (X)] NIL)\r\n"));
  ASSERT_TRUE(nil.ok());
  EXPECT_FALSE(nil->has_value());
}

TEST(ProbeMessageTest, FetchThatIsNotItemPairsIsAnError) {
  EXPECT_FALSE(ReadFetchedHeaders(Fetch("* 4 FETCH UID 3\r\n")).ok());
  EXPECT_FALSE(ReadFetchedHeaders(Fetch("* 4 FETCH (UID 3 FLAGS)\r\n")).ok());
}

TEST(ProbeMessageTest, ProbeMessageNeedsTheExactId) {
  const std::string header = std::string("X-Mailpulse-Hop: hop=mx1\r\n") +
                             "X-Mailpulse-Probe: v=1; id=" + kId + "00; t=1\r\n" +
                             "X-Mailpulse-Probe: v=1; id=" + kId + "; t=2\r\n" +
                             "X-Mailpulse-Hop: hop=mx2\r\n\r\n";
  const std::optional<ProbeMessage> m = ReadProbeMessage(9, header, kId);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->probe_header, std::string("v=1; id=") + kId + "; t=2");
  EXPECT_THAT(m->hop_stamps, ElementsAre("hop=mx1", "hop=mx2"));
  EXPECT_FALSE(ReadProbeMessage(9, "X-Mailpulse-Hop: hop=mx1\r\n\r\n", kId).has_value());
}

}  // namespace
}  // namespace mailpulse
