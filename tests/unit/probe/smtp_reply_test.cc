// ReplyParser: RFC 5321 4.2 replies fed in any split, and every malformation a clear error
// with bounded buffering. Also what the client reads out of replies (smtp_text.h): the EHLO
// capabilities and the queue id in the reply to the message data.
#include "probe/smtp/smtp_reply.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "probe/smtp/smtp_text.h"

namespace mailpulse {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Feeds `bytes` in one call; the test fails on a parse error.
std::vector<SmtpReply> ParseAll(std::string_view bytes) {
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  const Status status = parser.Feed(bytes, &replies);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(parser.buffered(), 0u);
  return replies;
}

// Feeds `bytes` until the parser reports an error and returns its message.
std::string ParseError(std::string_view bytes) {
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  const Status status = parser.Feed(bytes, &replies);
  EXPECT_FALSE(status.ok()) << "no error for: " << bytes;
  EXPECT_TRUE(parser.failed());
  return status.message();
}

// Replies as "code|enhanced|line|line..." for compact comparisons.
std::vector<std::string> Describe(const std::vector<SmtpReply>& replies) {
  std::vector<std::string> out;
  for (const SmtpReply& r : replies) {
    std::string s = std::to_string(r.code) + "|" + r.enhanced_code;
    for (const std::string& line : r.lines) s += "|" + line;
    out.push_back(s);
  }
  return out;
}

TEST(ReplyParserTest, SingleLineReplyGivesCodeAndText) {
  EXPECT_THAT(Describe(ParseAll("220 mx.example.org ESMTP Postfix\r\n")),
              ElementsAre("220||mx.example.org ESMTP Postfix"));
}

TEST(ReplyParserTest, BareCodeLineIsAReplyWithEmptyText) {
  EXPECT_THAT(Describe(ParseAll("250\r\n")), ElementsAre("250||"));
}

TEST(ReplyParserTest, MultilineReplyKeepsEveryLineInOrder) {
  EXPECT_THAT(Describe(ParseAll("250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                                "250 STARTTLS\r\n")),
              ElementsAre("250||mx.example.org|PIPELINING|SIZE 10240000|STARTTLS"));
}

TEST(ReplyParserTest, ContinuationLinesMayBeBare) {
  EXPECT_THAT(Describe(ParseAll("250-\r\n250\r\n")), ElementsAre("250|||"));
}

TEST(ReplyParserTest, BareLfLineEndsAreAccepted) {
  EXPECT_THAT(Describe(ParseAll("250-a\n250 b\n220 c\r\n")), ElementsAre("250||a|b", "220||c"));
}

TEST(ReplyParserTest, SeveralRepliesInOneChunkAreAllReturned) {
  EXPECT_THAT(Describe(ParseAll("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n")),
              ElementsAre("250|2.1.0|2.1.0 Ok", "250|2.1.5|2.1.5 Ok", "354||End data"));
}

TEST(ReplyParserTest, MultilineReplySplitAtEveryByteGivesTheSameReplies) {
  const std::string bytes =
      "220-mx.example.org ESMTP\r\n220-please wait\n220 ready\r\n"
      "550-5.1.1 <x@example.org>: no\r\n550 5.1.1 such user\r\n250\r\n";
  const std::vector<std::string> expected = Describe(ParseAll(bytes));
  ASSERT_EQ(expected.size(), 3u);
  for (std::size_t split = 1; split < bytes.size(); ++split) {
    for (std::size_t split2 = split; split2 < bytes.size(); ++split2) {
      ReplyParser parser;
      std::vector<SmtpReply> replies;
      const std::string_view all(bytes);
      ASSERT_TRUE(parser.Feed(all.substr(0, split), &replies).ok());
      ASSERT_TRUE(parser.Feed(all.substr(split, split2 - split), &replies).ok());
      ASSERT_TRUE(parser.Feed(all.substr(split2), &replies).ok());
      ASSERT_EQ(Describe(replies), expected) << "split at " << split << " and " << split2;
    }
  }
}

TEST(ReplyParserTest, OneByteAtATimeGivesTheSameReplies) {
  const std::string bytes = "250-mx\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n221 2.0.0 Bye\n";
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  for (char c : bytes) ASSERT_TRUE(parser.Feed(std::string_view(&c, 1), &replies).ok());
  EXPECT_EQ(Describe(replies), Describe(ParseAll(bytes)));
}

TEST(ReplyParserTest, EnhancedCodeIsTakenFromTheFirstLine) {
  const std::vector<SmtpReply> replies =
      ParseAll("550-5.1.1 <nobody@example.org>: Recipient address rejected\r\n550 4.2.2 x\r\n");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].enhanced_code, "5.1.1");
  EXPECT_EQ(replies[0].lines[0], "5.1.1 <nobody@example.org>: Recipient address rejected");
}

TEST(ReplyParserTest, EnhancedCodeNeedsClassTwoFourOrFiveAndOneToThreeDigitParts) {
  EXPECT_EQ(ParseAll("250 2.0.0\r\n")[0].enhanced_code, "2.0.0");
  EXPECT_EQ(ParseAll("451 4.123.456 later\r\n")[0].enhanced_code, "4.123.456");
  EXPECT_EQ(ParseAll("250 1.2.3 x\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 3.2.3 x\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 2.1234.5 x\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 2.1. x\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 2.1.0x\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 Ok 2.1.0\r\n")[0].enhanced_code, "");
  EXPECT_EQ(ParseAll("250 2..0 x\r\n")[0].enhanced_code, "");
}

TEST(ReplyParserTest, ContinuationWithADifferentCodeIsAnError) {
  EXPECT_THAT(ParseError("250-mx\r\n251 PIPELINING\r\n"), HasSubstr("continues a 250 reply"));
}

TEST(ReplyParserTest, NonDigitCodeIsAnError) {
  EXPECT_THAT(ParseError("2x0 ok\r\n"), HasSubstr("malformed reply line \"2x0 ok\""));
  EXPECT_THAT(ParseError("HTTP/1.1 400 Bad Request\r\n"), HasSubstr("malformed reply line"));
}

TEST(ReplyParserTest, CodeOutsideTwoHundredToFiveNinetyNineIsAnError) {
  EXPECT_THAT(ParseError("199 x\r\n"), HasSubstr("malformed"));
  EXPECT_THAT(ParseError("600 x\r\n"), HasSubstr("malformed"));
  EXPECT_THAT(ParseError("000 x\r\n"), HasSubstr("malformed"));
}

TEST(ReplyParserTest, CodeFollowedByAnythingButDashOrSpaceIsAnError) {
  EXPECT_THAT(ParseError("2500 x\r\n"), HasSubstr("malformed"));
  EXPECT_THAT(ParseError("250\tx\r\n"), HasSubstr("malformed"));
}

TEST(ReplyParserTest, ShortOrEmptyLineIsAnError) {
  EXPECT_THAT(ParseError("\r\n"), HasSubstr("malformed reply line \"\""));
  EXPECT_THAT(ParseError("25\r\n"), HasSubstr("malformed"));
}

TEST(ReplyParserTest, LineOfTheMaximumLengthIsAccepted) {
  const std::string line = "250 " + std::string(kMaxReplyLineLength - 4, 'a');
  ASSERT_EQ(line.size(), kMaxReplyLineLength);
  EXPECT_EQ(ParseAll(line + "\r\n").size(), 1u);
  EXPECT_EQ(ParseAll(line + "\n").size(), 1u);
}

TEST(ReplyParserTest, LineOneByteTooLongIsAnError) {
  const std::string line = "250 " + std::string(kMaxReplyLineLength - 3, 'a');
  EXPECT_THAT(ParseError(line + "\r\n"), HasSubstr("longer than 4096 octets"));
  EXPECT_THAT(ParseError(line + "\n"), HasSubstr("longer than 4096 octets"));
}

TEST(ReplyParserTest, EndlessLineIsAnErrorBeforeItEndsAndBuffersBoundedly) {
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  ASSERT_TRUE(parser.Feed("250-", &replies).ok());
  const std::string chunk(1000, 'a');
  Status status;
  int chunks = 0;
  while (status.ok() && chunks < 100) {
    status = parser.Feed(chunk, &replies);
    ++chunks;
  }
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(chunks, 5);
  EXPECT_LE(parser.buffered(), kMaxReplyLineLength + 1);
  EXPECT_THAT(status.message(), HasSubstr("longer than"));
  EXPECT_FALSE(parser.Feed(chunk, &replies).ok());
  EXPECT_LE(parser.buffered(), kMaxReplyLineLength + 1);
}

TEST(ReplyParserTest, ReplyOfTheMaximumLineCountIsAccepted) {
  std::string bytes;
  for (std::size_t i = 1; i < kMaxReplyLines; ++i) bytes += "250-x\r\n";
  bytes += "250 x\r\n";
  const std::vector<SmtpReply> replies = ParseAll(bytes);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].lines.size(), kMaxReplyLines);
}

TEST(ReplyParserTest, ReplyWithTooManyLinesIsAnError) {
  std::string bytes;
  for (std::size_t i = 0; i < kMaxReplyLines; ++i) bytes += "250-x\r\n";
  EXPECT_THAT(ParseError(bytes), HasSubstr("more than 256 lines"));
}

TEST(ReplyParserTest, ParserStaysFailedAfterAnError) {
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  const Status first = parser.Feed("garbage\r\n", &replies);
  ASSERT_FALSE(first.ok());
  const Status second = parser.Feed("250 ok\r\n", &replies);
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.message(), first.message());
  EXPECT_TRUE(replies.empty());
}

TEST(ReplyParserTest, RepliesBeforeAnErrorInTheSameChunkAreDelivered) {
  ReplyParser parser;
  std::vector<SmtpReply> replies;
  EXPECT_FALSE(parser.Feed("250 ok\r\nnonsense\r\n", &replies).ok());
  EXPECT_THAT(Describe(replies), ElementsAre("250||ok"));
}

TEST(ReplyParserTest, ErrorMessageEscapesControlBytesAndShortensTheLine) {
  const std::string message = ParseError(std::string("\x01\"\\\x7f\0", 5) + "\r\n");
  EXPECT_THAT(message, HasSubstr(R"("\x01\"\\\x7f\x00")"));
  const std::string long_line = ParseError(std::string(200, 'z') + "\n");
  EXPECT_THAT(long_line, HasSubstr("\"" + std::string(64, 'z') + "\"..."));
  EXPECT_LT(long_line.size(), 120u);
}

TEST(ReplyParserTest, ToStringJoinsLinesWithSlashes) {
  EXPECT_EQ(ParseAll("550-5.1.1 <x@y>: Recipient\r\n550 address rejected\r\n")[0].ToString(),
            "550 5.1.1 <x@y>: Recipient / address rejected");
  EXPECT_EQ(ParseAll("250\r\n")[0].ToString(), "250");
  EXPECT_EQ(ParseAll("221 Bye\r\n")[0].ToString(), "221 Bye");
}

TEST(ReplyParserTest, ReplyClassesFollowTheFirstDigit) {
  const std::vector<SmtpReply> replies = ParseAll("250 a\r\n354 b\r\n421 c\r\n554 d\r\n");
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_TRUE(replies[0].positive());
  EXPECT_TRUE(replies[1].positive());
  EXPECT_TRUE(replies[2].transient());
  EXPECT_FALSE(replies[2].permanent());
  EXPECT_TRUE(replies[3].permanent());
  EXPECT_FALSE(replies[3].positive());
}

Capabilities CapabilitiesFrom(std::string_view ehlo_reply) {
  const std::vector<SmtpReply> replies = ParseAll(ehlo_reply);
  return replies.size() == 1 ? ParseEhloCapabilities(replies[0]) : Capabilities{};
}

std::string QueueIdFrom(std::string_view final_reply) {
  const std::vector<SmtpReply> replies = ParseAll(final_reply);
  return replies.size() == 1 ? QueueIdFromReply(replies[0]) : "(no reply)";
}

TEST(EhloCapabilitiesTest, KeywordsAreParsedInAnyOrderAndCase) {
  const Capabilities caps = CapabilitiesFrom(
      "250-mx.example.org Hello\r\n250-smtputf8\r\n250-Auth login Plain\r\n250-8bitmime\r\n"
      "250-size 52428800\r\n250-StartTLS\r\n250 pipelining\r\n");
  EXPECT_TRUE(caps.esmtp);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.eight_bit_mime);
  EXPECT_TRUE(caps.smtputf8);
  EXPECT_EQ(caps.size, 52428800ull);
  EXPECT_THAT(caps.auth_mechanisms, ElementsAre("LOGIN", "PLAIN"));
}

TEST(EhloCapabilitiesTest, OldAuthEqualsSyntaxIsMergedWithTheStandardOne) {
  const Capabilities caps =
      CapabilitiesFrom("250-mx\r\n250-AUTH PLAIN LOGIN\r\n250 AUTH=PLAIN LOGIN CRAM-MD5\r\n");
  EXPECT_THAT(caps.auth_mechanisms, ElementsAre("PLAIN", "LOGIN", "CRAM-MD5"));
  EXPECT_THAT(CapabilitiesFrom("250-mx\r\n250 AUTH=LOGIN\r\n").auth_mechanisms,
              ElementsAre("LOGIN"));
}

TEST(EhloCapabilitiesTest, SizeWithoutAValidNumberIsLeftUnset) {
  EXPECT_FALSE(CapabilitiesFrom("250-mx\r\n250 SIZE\r\n").size.has_value());
  EXPECT_FALSE(CapabilitiesFrom("250-mx\r\n250 SIZE 12k\r\n").size.has_value());
  EXPECT_FALSE(CapabilitiesFrom("250-mx\r\n250 SIZE 99999999999999999999999\r\n").size);
  EXPECT_EQ(CapabilitiesFrom("250-mx\r\n250 SIZE 0\r\n").size, 0ull);
}

TEST(EhloCapabilitiesTest, FirstLineIsTheGreetingNotAKeyword) {
  const Capabilities caps = CapabilitiesFrom("250 STARTTLS\r\n");
  EXPECT_TRUE(caps.esmtp);
  EXPECT_FALSE(caps.starttls);
  EXPECT_THAT(caps.auth_mechanisms, IsEmpty());
}

TEST(QueueIdTest, PostfixQueuedAsGivesTheId) {
  EXPECT_EQ(QueueIdFrom("250 2.0.0 Ok: queued as 4Xb1Z23kqPz9sH\r\n"), "4Xb1Z23kqPz9sH");
  EXPECT_EQ(QueueIdFrom("250 Ok: queued as 3F2A81C0042\r\n"), "3F2A81C0042");
}

TEST(QueueIdTest, SendmailMessageAcceptedGivesTheLeadingId) {
  EXPECT_EQ(QueueIdFrom("250 2.0.0 3ABCDEf1234567 Message accepted for delivery\r\n"),
            "3ABCDEf1234567");
}

TEST(QueueIdTest, EximIdGivesTheId) {
  EXPECT_EQ(QueueIdFrom("250 OK id=1rAbCd-000123-Xy\r\n"), "1rAbCd-000123-Xy");
}

TEST(QueueIdTest, ReplyWithoutAnIdGivesNone) {
  EXPECT_EQ(QueueIdFrom("250 2.6.0 <abc@host> [InternalId=123] Queued mail for delivery\r\n"), "");
  EXPECT_EQ(QueueIdFrom("250 Message accepted for delivery\r\n"), "");
  EXPECT_EQ(QueueIdFrom("250 2.0.0 Ok\r\n"), "");
}

TEST(QueueIdTest, IdWithOddCharactersIsIgnored) {
  EXPECT_EQ(QueueIdFrom("250 queued as \x01\x02\r\n"), "");
  EXPECT_EQ(QueueIdFrom("250 queued as " + std::string(100, 'A') + "\r\n"), "");
  EXPECT_EQ(QueueIdFrom("250 queued as <ABC123>.\r\n"), "ABC123");
}

}  // namespace
}  // namespace mailpulse
