// ImapResponseParser: responses as Dovecot and the RFC 3501 examples write them, fed whole
// and at every byte split, and each kind of garbage and each limit as an error.
#include "probe/imap/imap_response.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailpulse {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Describe(const ImapValue& v) {
  switch (v.kind) {
    case ImapValue::Kind::kAtom:
      return v.text;
    case ImapValue::Kind::kString:
      return "\"" + v.text + "\"";
    case ImapValue::Kind::kList: {
      std::string out = "(";
      for (std::size_t i = 0; i < v.values.size(); ++i) {
        out += (i > 0 ? " " : "") + Describe(v.values[i]);
      }
      return out + ")";
    }
  }
  return "?";
}

// One response on one line, for comparing whole feeds with split ones.
std::string Describe(const ImapResponse& r) {
  switch (r.kind) {
    case ImapResponse::Kind::kContinuation:
      return "+|" + r.text;
    case ImapResponse::Kind::kStatus:
      return (r.tag.empty() ? "*" : r.tag) + "|" + r.status + "|" + r.code + "|" + r.text;
    case ImapResponse::Kind::kData: {
      std::string out = "*|" + (r.number ? std::to_string(*r.number) + "|" : "") + r.keyword;
      for (const ImapValue& v : r.values) out += "|" + Describe(v);
      return out;
    }
  }
  return "?";
}

std::vector<std::string> FeedAll(std::string_view bytes, Status* status = nullptr,
                                 ImapLimits limits = {}) {
  ImapResponseParser parser(limits);
  std::vector<ImapResponse> responses;
  Status s = parser.Feed(bytes, &responses);
  if (status != nullptr) *status = s;
  std::vector<std::string> out;
  for (const ImapResponse& r : responses) out.push_back(Describe(r));
  return out;
}

// Feeds `bytes` cut at every position and one byte at a time; each must give `expected`.
void ExpectAtEverySplit(std::string_view bytes, const std::vector<std::string>& expected) {
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ImapResponseParser parser;
    std::vector<ImapResponse> responses;
    ASSERT_TRUE(parser.Feed(bytes.substr(0, cut), &responses).ok()) << "cut " << cut;
    ASSERT_TRUE(parser.Feed(bytes.substr(cut), &responses).ok()) << "cut " << cut;
    std::vector<std::string> got;
    for (const ImapResponse& r : responses) got.push_back(Describe(r));
    ASSERT_EQ(got, expected) << "cut at " << cut;
    EXPECT_EQ(parser.buffered(), 0u);
  }
  ImapResponseParser parser;
  std::vector<ImapResponse> responses;
  for (char c : bytes) ASSERT_TRUE(parser.Feed(std::string_view(&c, 1), &responses).ok());
  std::vector<std::string> got;
  for (const ImapResponse& r : responses) got.push_back(Describe(r));
  EXPECT_EQ(got, expected) << "one byte at a time";
}

constexpr char kDovecotSelect[] =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
    "Dovecot (Debian) ready.\r\n"
    "mp1 OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] Logged in\r\n"
    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
    "* 2 EXISTS\r\n"
    "* OK [UIDVALIDITY 1718000000] UIDs valid\r\n"
    "mp2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n";

TEST(ImapResponseParserTest, DovecotLoginAndSelectAtEverySplit) {
  ExpectAtEverySplit(
      kDovecotSelect,
      {"*|OK|CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
       "AUTH=PLAIN|Dovecot (Debian) ready.",
       "mp1|OK|CAPABILITY IMAP4rev1 UIDPLUS MOVE|Logged in",
       "*|FLAGS|(\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
       "*|OK|PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)|Flags permitted.",
       "*|2|EXISTS", "*|OK|UIDVALIDITY 1718000000|UIDs valid",
       "mp2|OK|READ-WRITE|Select completed (0.001 + 0.000 secs)."});
}

constexpr char kFetch[] =
    "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (X-MAILPULSE-PROBE X-MAILPULSE-HOP)] {47}\r\n"
    "X-Mailpulse-Hop: hop=mx1; t=1; qid=A {3}\r\n)\r\n\r\n"
    " FLAGS (\\Seen))\r\n"
    "mp4 OK Fetch completed.\r\n";

TEST(ImapResponseParserTest, FetchWithLiteralAtEverySplit) {
  // The literal holds CRLFs, a brace announcement and a parenthesis: all of it is data.
  ExpectAtEverySplit(kFetch, {"*|2|FETCH|(UID 7 BODY[HEADER.FIELDS (X-MAILPULSE-PROBE "
                              "X-MAILPULSE-HOP)] \"X-Mailpulse-Hop: hop=mx1; t=1; qid=A {3}\r\n"
                              ")\r\n\r\n\" FLAGS (\\Seen))",
                              "mp4|OK||Fetch completed."});
}

TEST(ImapResponseParserTest, SearchResultsAndEmptySearch) {
  EXPECT_EQ(FeedAll("* SEARCH 4 9 12\r\n* SEARCH\r\n* search 5 \r\n"),
            (std::vector<std::string>{"*|SEARCH|4|9|12", "*|SEARCH", "*|SEARCH|5"}));
}

TEST(ImapResponseParserTest, ContinuationRequests) {
  EXPECT_EQ(FeedAll("+ \r\n+\r\n+ Ready for literal data\r\n+ dGVzdA==\r\n"),
            (std::vector<std::string>{"+|", "+|", "+|Ready for literal data", "+|dGVzdA=="}));
}

TEST(ImapResponseParserTest, QuotedStringsAreUnescaped) {
  EXPECT_EQ(FeedAll("* LIST (\\HasNoChildren) \"/\" \"a \\\"b\\\" \\\\c\"\r\n"),
            (std::vector<std::string>{"*|LIST|(\\HasNoChildren)|\"/\"|\"a \"b\" \\c\""}));
}

TEST(ImapResponseParserTest, NilEmptyListsNestingAndZeroLiteral) {
  ImapResponseParser parser;
  std::vector<ImapResponse> rs;
  ASSERT_TRUE(
      parser.Feed("* NAMESPACE ((\"\" \"/\")) NIL ()\r\n* 1 FETCH (BODY[] {0}\r\n)\r\n", &rs).ok());
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(Describe(rs[0]), "*|NAMESPACE|((\"\" \"/\"))|NIL|()");
  EXPECT_TRUE(rs[0].values[1].IsNil());
  EXPECT_EQ(Describe(rs[1]), "*|1|FETCH|(BODY[] \"\")");
}

TEST(ImapResponseParserTest, StatusWithoutTextAndBareLineFeeds) {
  EXPECT_EQ(
      FeedAll("* BYE\nmp9 NO [AUTHENTICATIONFAILED] Authentication failed.\n"),
      (std::vector<std::string>{"*|BYE||", "mp9|NO|AUTHENTICATIONFAILED|Authentication failed."}));
}

TEST(ImapResponseParserTest, StatusTextIsPrintableAndNamesStatusAndCode) {
  ImapResponseParser parser;
  std::vector<ImapResponse> rs;
  ASSERT_TRUE(parser.Feed("a1 NO [ALERT] bad\x1b[2J\x07 things\r\n", &rs).ok());
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_TRUE(rs[0].tagged());
  EXPECT_EQ(rs[0].StatusText(), "NO [ALERT] bad\\x1b[2J\\x07 things");
}

TEST(ImapResponseParserTest, NumbersAreUnsigned32Bit) {
  EXPECT_EQ((ImapValue{ImapValue::Kind::kAtom, "4294967295", {}}.Number()), 4294967295u);
  EXPECT_FALSE((ImapValue{ImapValue::Kind::kAtom, "4294967296", {}}.Number()));
  EXPECT_FALSE((ImapValue{ImapValue::Kind::kAtom, "12a", {}}.Number()));
  EXPECT_FALSE((ImapValue{ImapValue::Kind::kString, "12", {}}.Number()));
}

void ExpectError(std::string_view bytes, std::string_view message, ImapLimits limits = {}) {
  Status status;
  const std::vector<std::string> got = FeedAll(bytes, &status, limits);
  EXPECT_FALSE(status.ok()) << "accepted " << testing::PrintToString(std::string(bytes));
  EXPECT_THAT(status.message(), HasSubstr(std::string(message)));
}

TEST(ImapResponseParserTest, GarbageIsAClearError) {
  ExpectError(std::string("\x16\x03\x01\x00\x2a\x02\xff not imap\r\n", 18),
              "malformed response line \"\\x16\\x03\\x01\\x00*\\x02\\xff not imap");
  ExpectError("* \r\n", "malformed untagged response");
  ExpectError("HTTP/1.1 400 Bad Request\r\n", "not OK, NO or BAD");
  ExpectError("a+1 OK done\r\n", "malformed response line");
  ExpectError("* LIST () \"/\" \"unterminated\r\n", "unterminated quoted string");
  ExpectError("* LIST () \"/\" \"bad \\n escape\"\r\n", "bad escape");
  ExpectError("* 1 FETCH (BODY[HEADER] {5} x)\r\n", "does not announce a literal");
  ExpectError("* 1 FETCH (UID 5\r\n", "response ends where a space should be");
  ExpectError("* 1 FETCH (BODY[HEADER.FIELDS (A)\r\n", "unterminated '['");
  ExpectError("* 99999999999 EXISTS\r\n", "bad message number");
  ExpectError("+not a continuation\r\n", "malformed continuation");
  ExpectError("* OK {3}\r\nabc\r\n", "a literal in a OK response");
  ExpectError("* LIST (\x80) \"/\" x\r\n", "expected an atom");
}

TEST(ImapResponseParserTest, ErrorIsStickyButEarlierResponsesSurvive) {
  ImapResponseParser parser;
  std::vector<ImapResponse> rs;
  EXPECT_FALSE(parser.Feed("* 1 EXISTS\r\nmp1 FOO\r\n* 2 EXISTS\r\n", &rs).ok());
  EXPECT_EQ(rs.size(), 1u);
  EXPECT_TRUE(parser.failed());
  EXPECT_FALSE(parser.Feed("* 3 EXISTS\r\n", &rs).ok());
  EXPECT_EQ(rs.size(), 1u);
}

TEST(ImapResponseParserTest, OverLongLineIsRefusedBeforeItEnds) {
  ImapLimits limits;
  limits.max_line = 100;
  ImapResponseParser parser(limits);
  std::vector<ImapResponse> rs;
  EXPECT_TRUE(parser.Feed("* OK " + std::string(95, 'x'), &rs).ok());
  const Status s = parser.Feed(std::string(10, 'x'), &rs);  // still no line end
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("longer than 100 octets"));
  EXPECT_LE(parser.buffered(), 101u);
}

TEST(ImapResponseParserTest, OverLongLiteralIsRefusedWhenAnnounced) {
  ImapResponseParser parser;  // default limit: 64 KiB
  std::vector<ImapResponse> rs;
  const Status s = parser.Feed("* 1 FETCH (UID 1 BODY[HEADER] {70000}\r\n", &rs);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("literal of 70000 octets announced, over the limit of 65536"));
  EXPECT_THAT(rs, IsEmpty());
}

TEST(ImapResponseParserTest, LimitsOnLiteralsResponseSizeAndDepth) {
  ImapLimits limits;
  limits.max_literals = 2;
  ExpectError("* 1 FETCH (A {1}\r\na B {1}\r\nb C {1}\r\nc)\r\n", "more than 2 literals", limits);
  limits = ImapLimits{};
  limits.max_response = 50;
  ExpectError("* 1 FETCH (A {40}\r\n" + std::string(40, 'a') + " B {40}\r\n", "response longer",
              limits);
  limits = ImapLimits{};
  limits.max_depth = 3;
  EXPECT_EQ(FeedAll("* X ((()))\r\n", nullptr, limits), std::vector<std::string>{"*|X|((()))"});
  ExpectError("* X (((())))\r\n", "nested deeper than 3", limits);
}

}  // namespace
}  // namespace mailpulse
