// The IMAP client's text helpers: base64 (RFC 4648 test vectors), quoted strings, header
// fields with folding, and the probe id of an X-Mailpulse-Probe value.
#include "probe/imap/imap_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailpulse {
namespace {

using ::testing::ElementsAre;

TEST(ImapTextTest, Base64MatchesRfc4648Vectors) {
  EXPECT_EQ(ImapBase64Encode(""), "");
  EXPECT_EQ(ImapBase64Encode("f"), "Zg==");
  EXPECT_EQ(ImapBase64Encode("fo"), "Zm8=");
  EXPECT_EQ(ImapBase64Encode("foo"), "Zm9v");
  EXPECT_EQ(ImapBase64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(ImapBase64Encode(std::string("\0u\0p", 4)), "AHUAcA==");
}

TEST(ImapTextTest, QuotedStringsEscapeQuoteAndBackslashOnly) {
  EXPECT_TRUE(IsImapQuotable("INBOX/Probes 2024"));
  EXPECT_EQ(QuoteImapString("a\"b\\c d"), "\"a\\\"b\\\\c d\"");
  EXPECT_FALSE(IsImapQuotable("line\r\nbreak"));
  EXPECT_FALSE(IsImapQuotable("p\xc3\xa4ss"));
  EXPECT_FALSE(IsImapQuotable(std::string("a\0b", 3)));
}

TEST(ImapTextTest, PrintableEscapesControlsAndCuts) {
  EXPECT_EQ(ImapPrintable("ok \x1b[2J\\"), "ok \\x1b[2J\\x5c");
  EXPECT_EQ(ImapPrintable("abcdef", 3), "abc...");
}

TEST(ImapTextTest, HeaderFieldsAreUnfoldedInOrder) {
  const auto fields = ParseHeaderFields(
      " a continuation with no field before it\r\n"
      "X-Mailpulse-Hop: hop=mx1; t=1\r\n"
      "x-mailpulse-hop:hop=mx2;\r\n t=2\r\n"
      "Date:   Mon, 10 Jun 2024 12:00:00 +0000  \n"
      "garbage line without colon\r\n"
      "X-Mailpulse-Hop: hop=mx3\r\n"
      "\r\n"
      "X-Mailpulse-Hop: after the end\r\n");
  ASSERT_EQ(fields.size(), 4u);
  EXPECT_EQ(fields[1].value, "hop=mx2; t=2");
  EXPECT_TRUE(HeaderNameIs(fields[1], "X-MAILPULSE-HOP"));
  EXPECT_EQ(fields[2].value, "Mon, 10 Jun 2024 12:00:00 +0000");
  EXPECT_EQ(fields[3].value, "hop=mx3");
}

TEST(ImapTextTest, ProbeIdIsTheOneIdField) {
  constexpr char kId[] = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(ProbeIdOfHeader(std::string("v=1; id=") + kId + "; t=1; src=p; mac=x=="), kId);
  EXPECT_EQ(ProbeIdOfHeader(std::string("v=1 ;ID = 0123456789ABCDEF0123456789ABCDEF ;t=1")), kId);
  EXPECT_EQ(ProbeIdOfHeader("v=1; t=1; src=p"), std::nullopt);
  EXPECT_EQ(ProbeIdOfHeader(std::string("id=") + kId + "; id=" + kId), std::nullopt);
  EXPECT_EQ(ProbeIdOfHeader("v=1; id=; t=1"), std::nullopt);
  EXPECT_EQ(ProbeIdOfHeader(std::string("v=1; xid=") + kId), std::nullopt);
  EXPECT_TRUE(IsProbeId(kId));
  EXPECT_FALSE(IsProbeId(std::string(kId) + "0"));
  EXPECT_FALSE(IsProbeId("0123456789abcdef0123456789abcdeg"));
}

TEST(ImapTextTest, HeaderFieldsOfAnEmptySectionAreNone) {
  EXPECT_THAT(ParseHeaderFields("\r\n"), ElementsAre());
  EXPECT_THAT(ParseHeaderFields(""), ElementsAre());
}

}  // namespace
}  // namespace mailpulse
