// The MIME pieces under the DSN parser, one rule at a time (RFC 5322 header blocks, RFC 2046
// multipart splitting, RFC 2045 transfer encodings).
#include "milter/core/mime_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace mailpulse::mime {
namespace {

HeaderBlock Read(std::string_view text, bool complete = true) {
  StatusOr<HeaderBlock> block = ReadHeaderBlock(text, complete);
  EXPECT_TRUE(block.ok()) << block.status().message();
  return block.ok() ? *block : HeaderBlock{};
}

TEST(ReadHeaderBlockTest, FieldsEndAtTheEmptyLineAndTheBodyFollows) {
  const HeaderBlock b = Read("A: 1\r\nB:2\r\n\r\nbody\r\n");
  ASSERT_EQ(b.fields.size(), 2u);
  EXPECT_EQ(b.fields[0].name, "A");
  EXPECT_EQ(b.fields[1].value, "2");
  EXPECT_TRUE(b.ended);
  EXPECT_EQ(b.body, "body\r\n");
}

TEST(ReadHeaderBlockTest, FoldedValueIsUnfoldedToSingleSpaces) {
  const HeaderBlock b = Read("Subject: one  \n    two\n\t\tthree\n \nNext: x\n");
  ASSERT_EQ(b.fields.size(), 2u);
  EXPECT_EQ(b.fields[0].value, "one two three");
  EXPECT_FALSE(b.ended);
}

TEST(ReadHeaderBlockTest, LinesThatAreNotFieldsAreSkipped) {
  const HeaderBlock b = Read(
      "From sender@example.org Mon Dec  1 20:39:15 2025\n"
      "  orphan continuation\nno colon here\n: no name\nTo : a@b\n");
  ASSERT_EQ(b.fields.size(), 1u);
  EXPECT_EQ(b.fields[0].name, "To");  // RFC 5322 4.5.3: whitespace before the colon
  EXPECT_EQ(b.fields[0].value, "a@b");
}

TEST(ReadHeaderBlockTest, CutTextDropsTheLastFieldThatMayBeIncomplete) {
  EXPECT_EQ(Read("A: 1\nB: 2\n", /*complete=*/false).fields.size(), 1u);
  EXPECT_EQ(Read("A: 1\nB: 2\n", /*complete=*/true).fields.size(), 2u);
  EXPECT_EQ(Read("A: 1\nB: 2\n\n", /*complete=*/false).fields.size(), 2u);
  EXPECT_EQ(Read("A: 1\nB: 2\nnot a field\n", /*complete=*/false).fields.size(), 2u);
}

TEST(ReadHeaderBlockTest, OverlongLineIsAnError) {
  EXPECT_TRUE(ReadHeaderBlock("A: " + std::string(kMaxHeaderLine - 3, 'x') + "\n", true).ok());
  EXPECT_FALSE(ReadHeaderBlock("A: " + std::string(kMaxHeaderLine - 2, 'x') + "\n", true).ok());
  EXPECT_FALSE(ReadHeaderBlock(std::string(kMaxHeaderLine + 1, 'x'), true).ok());
}

TEST(ReadHeaderBlockTest, FindFieldIgnoresCaseAndTakesTheFirst) {
  const HeaderBlock b = Read("x-a: 1\nX-A: 2\n");
  ASSERT_NE(FindField(b, "X-a"), nullptr);
  EXPECT_EQ(*FindField(b, "X-a"), "1");
  EXPECT_EQ(FindField(b, "X-B"), nullptr);
}

TEST(ParseContentTypeTest, TypeIsLowerCasedAndParametersKeepTheirValues) {
  const auto ct = ParseContentType("Text/Plain; Charset=\"UTF-8\"; format=flowed");
  ASSERT_TRUE(ct.has_value());
  EXPECT_EQ(ct->type, "text/plain");
  ASSERT_NE(ct->Parameter("charset"), nullptr);
  EXPECT_EQ(*ct->Parameter("charset"), "UTF-8");
  EXPECT_EQ(*ct->Parameter("format"), "flowed");
  EXPECT_EQ(ct->Parameter("boundary"), nullptr);
}

TEST(ParseContentTypeTest, UnclosedQuotedStringRunsToTheEnd) {
  const auto ct = ParseContentType("multipart/mixed; boundary=\"abc");
  ASSERT_TRUE(ct.has_value());
  EXPECT_EQ(*ct->Parameter("boundary"), "abc");
}

// Found by dsn_parser_fuzz: a quoted pair cut off at the end of an unclosed comment.
TEST(ParseContentTypeTest, BackslashAtTheEndOfAnUnclosedCommentEndsTheValue) {
  EXPECT_EQ(ParseContentType("(comment \\"), std::nullopt);
  const auto ct = ParseContentType("text/plain; a=b; (comment \\");
  ASSERT_TRUE(ct.has_value());
  EXPECT_EQ(ct->parameters.size(), 1u);
}

std::vector<std::string> Parts(std::string_view body, std::size_t max_parts = 10) {
  std::vector<std::string> out;
  for (const BodyPart& p : SplitMultipart(body, "b", max_parts)) {
    out.push_back(std::string(p.text) + (p.complete ? "" : "<cut>"));
  }
  return out;
}

TEST(SplitMultipartTest, LineEndBeforeADelimiterBelongsToTheDelimiter) {
  EXPECT_EQ(Parts("preamble\r\n--b\r\none\r\n\r\n--b\r\ntwo\r\n--b--\r\nepilogue\r\n--b\r\n"),
            (std::vector<std::string>{"one\r\n", "two"}));
}

TEST(SplitMultipartTest, DelimiterAtTheVeryStartAndEmptyParts) {
  EXPECT_EQ(Parts("--b\n--b\nx\n--b--"), (std::vector<std::string>{"", "x"}));
}

TEST(SplitMultipartTest, BodyWithoutCloseDelimiterEndsInACutPart) {
  EXPECT_EQ(Parts("--b\none\n--b\ntwo"), (std::vector<std::string>{"one", "two<cut>"}));
}

TEST(SplitMultipartTest, LinesThatOnlyStartLikeADelimiterAreContent) {
  EXPECT_EQ(Parts("--b\n--bb\n --b\n-b\n--b x\n--b--"),
            (std::vector<std::string>{"--bb\n --b\n-b\n--b x"}));
}

TEST(SplitMultipartTest, NoDelimiterGivesNoPart) { EXPECT_TRUE(Parts("--c\nx\n--c--").empty()); }

TEST(SplitMultipartTest, PartsBeyondTheMaximumAreIgnored) {
  EXPECT_EQ(Parts("--b\n1\n--b\n2\n--b\n3\n--b--", 2), (std::vector<std::string>{"1", "2"}));
}

TEST(TransferEncodingTest, Base64IgnoresLineBreaksAndJunkAndStopsAtPadding) {
  EXPECT_TRUE(IsDecodable(" Base64 "));
  EXPECT_EQ(DecodeTransferEncoding("aGVs\r\nbG8*\n=ignored", "base64"), "hello");
}

TEST(TransferEncodingTest, QuotedPrintableJoinsSoftBreaksAndKeepsMalformedEquals) {
  EXPECT_TRUE(IsDecodable("Quoted-Printable"));
  EXPECT_EQ(DecodeTransferEncoding("a=3Db=  \r\nc =ZZ=4", "quoted-printable"), "a=bc =ZZ=4");
}

TEST(TransferEncodingTest, OtherEncodingsAreReadAsTheyAre) {
  EXPECT_FALSE(IsDecodable("8bit"));
  EXPECT_FALSE(IsDecodable("x-uuencode"));
  EXPECT_EQ(DecodeTransferEncoding("a=3D", "7bit"), "a=3D");
}

}  // namespace
}  // namespace mailpulse::mime
