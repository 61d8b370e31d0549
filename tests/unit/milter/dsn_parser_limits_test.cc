// ParseDsn at and past its bounds (kMaxDsnBytes, kMaxDsnRecipients, kMaxDsnFieldBytes, the
// 16 KiB header line), on reports cut short, and on junk: an error or a clean, bounded report,
// never a crash.
#include "milter/core/dsn_parser.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "milter/core/mime_reader.h"

#include "tests/unit/milter/dsn_test_support.h"

namespace mailpulse::dsn_test {
namespace {

// --- ParseDsn: bounds and garbage ----------------------------------------------------------

TEST(ParseDsnTest, MoreThanAHundredRecipientsAreCountedNotKept) {
  std::string fields = kPerMessage;
  for (int i = 0; i < 150; ++i) {
    fields += "Final-Recipient: rfc822; r" + std::to_string(i) +
              "@example.org\n"
              "Action: failed\nStatus: 5.1.1\n\n";
  }
  const DsnReport r = ParseBodyOk(Report(fields));
  ASSERT_EQ(r.recipients.size(), kMaxDsnRecipients);
  EXPECT_EQ(r.recipients[99].final_recipient, "r99@example.org");
  EXPECT_EQ(r.omitted_recipients, 50u);
}

TEST(ParseDsnTest, TenThousandRecipientBlocksAreReadOnlyUpToTheByteLimit) {
  std::string fields = kPerMessage;
  for (int i = 0; i < 10000; ++i) {
    fields += "Final-Recipient: rfc822; r" + std::to_string(i) +
              "@example.org\n"
              "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no\n\n";
  }
  const std::string body = Report(fields);
  ASSERT_GT(body.size(), kMaxDsnBytes);
  const DsnReport r = ParseBodyOk(body);
  EXPECT_EQ(r.recipients.size(), kMaxDsnRecipients);
  EXPECT_GT(r.omitted_recipients, 1000u);
  EXPECT_LT(r.omitted_recipients, 10000u - kMaxDsnRecipients);  // the rest lies past the limit
}

TEST(ParseDsnTest, NothingBeyondTheByteLimitIsLookedAt) {
  const std::string body = "--b\nContent-Type: text/plain\n\n" + std::string(kMaxDsnBytes, 'x') +
                           "\n--b\nContent-Type: message/delivery-status\n\n" + kRecipient;
  EXPECT_EQ(ParseError(body), "no message/delivery-status part");
}

TEST(ParseDsnTest, EndlessLineInTheDeliveryStatusPartIsAnError) {
  const std::string body = "--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
                           "Diagnostic-Code: smtp; " + std::string(200000, 'x');
  EXPECT_EQ(ParseError(body), "header line longer than 16384 bytes");
}

TEST(ParseDsnTest, FieldFoldedPastTheLineLimitIsAnError) {
  std::string folded = "Diagnostic-Code: smtp; 550";
  for (int i = 0; i < 400; ++i) folded += "\n " + std::string(60, 'y');
  EXPECT_EQ(ParseError(Report(kRecipient + folded)), "header line longer than 16384 bytes");
}

TEST(ParseDsnTest, HeaderLineAtTheLimitIsAccepted) {
  const std::string line = "X-Long: " + std::string(mime::kMaxHeaderLine - 8, 'z');
  const DsnReport r = ParseBodyOk(Report(kRecipient, line + "\nX-Mailpulse-Probe: " + kToken));
  EXPECT_EQ(r.returned_probe_token, kToken);
}

TEST(ParseDsnTest, HeaderLineOverTheLimitInTheReturnedHeadersIsAnError) {
  EXPECT_EQ(ParseError(Report(kRecipient, "X-Long: " + std::string(20000, 'z'))),
            "header line longer than 16384 bytes");
}

TEST(ParseDsnTest, EndlessLineInTheNotificationTextIsHarmless) {
  const std::string body = "--b\nContent-Type: text/plain\n\n" + std::string(200000, 'x') +
                           "\n--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
                           "--b--";
  EXPECT_EQ(ParseBodyOk(body).recipients.size(), 1u);
}

TEST(ParseDsnTest, TruncatedInsideTheTokenHeaderGivesNoToken) {
  const std::string body =
      "--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
      "--b\nContent-Type: text/rfc822-headers\n\nX-Mailpulse-Probe: " + kToken +
      "\n";  // the report ends here: a continuation may be lost
  const DsnReport r = ParseBodyOk(body);
  EXPECT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.returned_probe_token, "");
  EXPECT_EQ(ParseBodyOk(body + "Subject: x\n").returned_probe_token, kToken);
}

TEST(ParseDsnTest, TruncatedInsideTheSecondRecipientKeepsTheFirstWhole) {
  const std::string body = "--b\nContent-Type: message/delivery-status\n\n" + kPerMessage +
                           kRecipient +
                           "\nFinal-Recipient: rfc822; second@example.org\n"
                           "Action: fai";
  const DsnReport r = ParseBodyOk(body);
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
  EXPECT_EQ(r.recipients[1].final_recipient, "second@example.org");
  EXPECT_EQ(r.recipients[1].action, "");  // cut: dropped, not reported as "fai"
}

TEST(ParseDsnTest, BinaryJunkIsAnErrorOrACleanReportNeverACrash) {
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  const auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::vector<std::string> pieces = {"--b\n",
                                           "--b--\n",
                                           "\r\n",
                                           "\n\n",
                                           "Content-Type: message/delivery-status\n",
                                           "Content-Type: message/rfc822\n",
                                           "Content-Transfer-Encoding: base64\n",
                                           "Final-Recipient: rfc822; <",
                                           "Action: ",
                                           "Status: 5.1.1",
                                           "X-Mailpulse-Probe: ",
                                           " ",
                                           "\t",
                                           "=",
                                           "(",
                                           "\"",
                                           ";"};
  int reports = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string junk;
    const std::size_t n = next() % 400;
    for (std::size_t i = 0; i < n; ++i) {
      if (next() % 3 == 0) {
        junk += pieces[next() % pieces.size()];
      } else {
        junk.push_back(static_cast<char>(next() & 0xff));
      }
    }
    StatusOr<DsnReport> r = ParseDsn(junk, "b");
    if (!r.ok()) continue;
    ++reports;
    EXPECT_TRUE(IsCleanUtf8(r->reporting_mta));
    EXPECT_TRUE(IsCleanUtf8(r->returned_probe_token));
    for (const DsnRecipient& p : r->recipients) {
      for (const std::string* s :
           {&p.final_recipient, &p.action, &p.status, &p.diagnostic_code, &p.remote_mta}) {
        EXPECT_TRUE(IsCleanUtf8(*s)) << *s;
        EXPECT_LE(s->size(), kMaxDsnFieldBytes);
      }
    }
  }
  EXPECT_GT(reports, 0);  // the junk did reach the field parser now and then
}

}  // namespace
}  // namespace mailpulse::dsn_test
