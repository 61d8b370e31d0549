// ParseDsn one rule at a time on small report bodies: how fields are read, how the MIME
// structure is split, and which header of which part gives the returned token.
#include "milter/core/dsn_parser.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/milter/dsn_test_support.h"

namespace mailpulse::dsn_test {
namespace {

// --- ParseDsn: fields ----------------------------------------------------------------------

TEST(ParseDsnTest, FinalRecipientInAngleBracketsIsUnwrapped) {
  const DsnReport r = ParseBodyOk(Report(kPerMessage + "Final-Recipient: rfc822; <a@example.org>\n"
                                                       "Action: failed\nStatus: 5.1.1\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "a@example.org");
}

TEST(ParseDsnTest, OriginalRecipientStandsInWhenFinalRecipientGivesNone) {
  DsnReport r = ParseBodyOk(Report(kPerMessage + "Original-Recipient: rfc822;orig@example.org\n"
                                                 "Action: failed\nStatus: 5.1.1\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "orig@example.org");
  r = ParseBodyOk(Report(kPerMessage +
                         "Final-Recipient: rfc822;\n"
                         "Original-Recipient: rfc822; <orig@example.org>\nAction: failed\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "orig@example.org");
}

TEST(ParseDsnTest, FieldNamesInAnyCaseAndFoldedValuesAreRead) {
  const DsnReport r = ParseBodyOk(
      Report("REPORTING-MTA: dns;\n mx.example.net\n\n"
             "final-recipient: rfc822;\n\ta@example.org\nACTION: Failed\nstatus:\n 5.2.2\n"
             "diagnostic-code: smtp; 552 5.2.2 <a@example.org>:\r\n    Mailbox full\n\t  (quota)\n"
             "remote-mta: dns;\n  mx.example.org\n"));
  EXPECT_EQ(r.reporting_mta, "mx.example.net");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(Describe(r),
            Describe(DsnReport{
                "mx.example.net",
                {{"a@example.org", "failed", "5.2.2",
                  "smtp; 552 5.2.2 <a@example.org>: Mailbox full (quota)", "mx.example.org"}},
                0,
                ""}));
}

TEST(ParseDsnTest, StatusCommentIsDropped) {
  const DsnReport r =
      ParseBodyOk(Report(kPerMessage + "Final-Recipient: rfc822; a@example.org\n"
                                       "Action: failed\nStatus: 5.0.0 (permanent failure)\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].status, "5.0.0");
}

TEST(ParseDsnTest, StatusThatIsNotAnEnhancedCodeIsEmpty) {
  for (const char* bad : {"550", "9.1.1", "5.1", "5.1234.1", "x.y.z", "5..1"}) {
    const DsnReport r = ParseBodyOk(Report(kPerMessage +
                                           "Final-Recipient: rfc822; a@b\n"
                                           "Action: failed\nStatus: " +
                                           bad + "\n"));
    ASSERT_EQ(r.recipients.size(), 1u) << bad;
    EXPECT_EQ(r.recipients[0].status, "") << bad;
  }
}

TEST(ParseDsnTest, MissingOptionalFieldsAreEmpty) {
  const DsnReport r =
      ParseBodyOk(Report("Arrival-Date: Mon, 1 Dec 2025 20:39:15 GMT\n\n"
                         "Final-Recipient: rfc822; a@example.org\n"
                         "Action: failed\nStatus: 5.1.1\n"));
  EXPECT_EQ(Describe(r),
            Describe(DsnReport{"", {{"a@example.org", "failed", "5.1.1", "", ""}}, 0, ""}));
}

TEST(ParseDsnTest, BlocksSeparatedBySeveralEmptyLinesAreAllRead) {
  const DsnReport r = ParseBodyOk(Report("\n\nReporting-MTA: dns; m\n\n\n\n" + kRecipient +
                                         "\n\n\nFinal-Recipient: rfc822; c@example.org\n"
                                         "Action: delayed\nStatus: 4.4.7\n\n\n\n"));
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[1].final_recipient, "c@example.org");
  EXPECT_EQ(r.recipients[1].action, "delayed");
}

TEST(ParseDsnTest, ReportWithEverythingInOneBlockStillNamesItsRecipient) {
  const DsnReport r = ParseBodyOk(Report("Reporting-MTA: dns; mx.example.net\n" + kRecipient));
  EXPECT_EQ(r.reporting_mta, "mx.example.net");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "a@example.org");
}

TEST(ParseDsnTest, BlockOfExtensionFieldsOnlyIsNotARecipient) {
  const DsnReport r = ParseBodyOk(Report(kPerMessage + "X-Vendor-Info: x\n\n" + kRecipient));
  EXPECT_EQ(r.recipients.size(), 1u);
}

TEST(ParseDsnTest, DiagnosticCodeIsCutAt512BytesOnACharacterBoundary) {
  std::string euros;
  for (int i = 0; i < 300; ++i) euros += "\xe2\x82\xac";  // 3 bytes each
  const DsnReport r =
      ParseBodyOk(Report(kPerMessage + kRecipient + "Diagnostic-Code: smtp; " + euros + "\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  const std::string& code = r.recipients[0].diagnostic_code;
  EXPECT_LE(code.size(), kMaxDsnFieldBytes);
  EXPECT_GE(code.size(), kMaxDsnFieldBytes - 2);
  EXPECT_EQ(code.substr(0, 6), "smtp; ");
  EXPECT_TRUE(IsCleanUtf8(code));
}

TEST(ParseDsnTest, EveryTextFieldIsBounded) {
  const std::string long_name(5000, 'x');
  const DsnReport r =
      ParseBodyOk(Report("Reporting-MTA: dns; " + long_name + "\n\n" + "Final-Recipient: rfc822; " +
                         long_name + "@b\n" + "Action: " + long_name + "\nStatus: 5.1.1\n" +
                         "Remote-MTA: dns; " + long_name + "\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.reporting_mta.size(), kMaxDsnFieldBytes);
  EXPECT_EQ(r.recipients[0].final_recipient.size(), kMaxDsnFieldBytes);
  EXPECT_LE(r.recipients[0].action.size(), 32u);
  EXPECT_EQ(r.recipients[0].remote_mta.size(), kMaxDsnFieldBytes);
}

TEST(ParseDsnTest, InvalidUtf8AndControlCharactersAreReplaced) {
  const DsnReport r = ParseBodyOk(
      Report(kPerMessage + kRecipient + "Diagnostic-Code: smtp; 550 \xff\x01x\xc3(\x7f\n"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].diagnostic_code, "smtp; 550 \xef\xbf\xbd x\xef\xbf\xbd(");
}

// --- ParseDsn: MIME structure --------------------------------------------------------------

TEST(ParseDsnTest, BoundaryThatMatchesNoDelimiterIsAnError) {
  EXPECT_EQ(ParseError("--other\nContent-Type: message/delivery-status\n\n" + kRecipient),
            "no part delimited by the boundary");
}

TEST(ParseDsnTest, EmptyBoundaryIsAnError) { EXPECT_FALSE(ParseDsn(Report(kRecipient), "").ok()); }

TEST(ParseDsnTest, ReportWithoutDeliveryStatusPartIsAnError) {
  EXPECT_EQ(ParseError("--b\nContent-Type: text/plain\n\n" + kRecipient +
                       "--b\nContent-Type: message/rfc822\n\nX-Mailpulse-Probe: " + kToken +
                       "\n\n--b--\n"),
            "no message/delivery-status part");
}

TEST(ParseDsnTest, DeliveryStatusWithoutRecipientIsAnError) {
  EXPECT_EQ(ParseError(Report("Reporting-MTA: dns; mx.example.net\n")), "no recipient");
}

TEST(ParseDsnTest, NestedBoundaryThatExtendsTheOuterOneIsNotADelimiter) {
  const std::string body =
      "--b\nContent-Type: multipart/alternative; boundary=bnested\n\n"
      "--bnested\nContent-Type: message/delivery-status\n\n"
      "Final-Recipient: rfc822; decoy@example.org\nAction: failed\nStatus: 5.0.0\n"
      "--bnested--\n"
      "--b\nContent-Type: message/delivery-status\n\n" +
      kRecipient + "--b--\n";
  const DsnReport r = ParseBodyOk(body);
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "a@example.org");
}

TEST(ParseDsnTest, DelimiterMayBeFollowedBySpacesAndTabs) {
  const DsnReport r = ParseBodyOk("--b \t\r\nContent-Type: message/delivery-status\r\n\r\n" +
                                  WithCrlf(kRecipient) + "--b--  \r\n");
  EXPECT_EQ(r.recipients.size(), 1u);
}

TEST(ParseDsnTest, PartsAfterTheCloseDelimiterAreIgnored) {
  EXPECT_EQ(ParseError("--b\nContent-Type: text/plain\n\nhi\n--b--\n"
                       "--b\nContent-Type: message/delivery-status\n\n" +
                       kRecipient),
            "no message/delivery-status part");
}

TEST(ParseDsnTest, PartHeadersInAnyCaseAndAPartWithoutHeaderAreRead) {
  const DsnReport r = ParseBodyOk(
      "--b\n\nno header: text/plain by default\n"
      "--b\ncontent-type: Message/Delivery-Status; x=y\n\n" +
      kRecipient + "--b--");
  EXPECT_EQ(r.recipients.size(), 1u);
}

TEST(ParseDsnTest, GlobalTypesOfRfc6533AreReadLikeTheAsciiOnes) {
  const DsnReport r = ParseBodyOk(
      "--b\nContent-Type: message/global-delivery-status\n\n" + kPerMessage + kRecipient +
      "--b\nContent-Type: message/global-headers\n\nX-Mailpulse-Probe: " + kToken + "\n\n--b--");
  EXPECT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.returned_probe_token, kToken);
}

TEST(ParseDsnTest, DeliveryStatusInBase64IsDecoded) {
  // base64 of "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n"
  const DsnReport r = ParseBodyOk(
      "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: BASE64\n\n"
      "RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGFAZXhhbXBsZS5vcmcKQWN0aW9uOiBmYWlsZWQK\n"
      "U3RhdHVzOiA1LjEuMQo=\n--b--\n");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
}

// --- ParseDsn: the returned message --------------------------------------------------------

TEST(ParseDsnTest, ReportWithoutReturnedMessageHasNoToken) {
  const DsnReport r = ParseBodyOk(Report(kPerMessage + kRecipient));
  EXPECT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.returned_probe_token, "");
}

TEST(ParseDsnTest, TokenInTheNotificationTextIsNotTaken) {
  const std::string body = "--b\nContent-Type: text/plain\n\nX-Mailpulse-Probe: " + kToken +
                           "\n--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
                           "--b--\n";
  EXPECT_EQ(ParseBodyOk(body).returned_probe_token, "");
}

TEST(ParseDsnTest, TokenInTheReturnedBodyIsNotTaken) {
  const DsnReport r = ParseBodyOk(Report(
      kRecipient, "From: a@b\nSubject: x\n\nX-Mailpulse-Probe: " + kToken, "message/rfc822"));
  EXPECT_EQ(r.returned_probe_token, "");
}

TEST(ParseDsnTest, FirstTokenHeaderOfTheReturnedMessageWins) {
  const DsnReport r = ParseBodyOk(
      Report(kRecipient, "X-Mailpulse-Probe: " + kToken + "\nX-Mailpulse-Probe: v=1; id=other\n"));
  EXPECT_EQ(r.returned_probe_token, kToken);
}

TEST(ParseDsnTest, ReturnedMessageInBase64IsDecoded) {
  // base64 of "Subject: probe\r\nX-Mailpulse-Probe: v=1; id=00ff\r\n\r\nbody\r\n"
  const std::string body =
      "--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
      "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
      "U3ViamVjdDogcHJvYmUNClgtTWFpbHB1bHNlLVByb2JlOiB2PTE7IGlkPTAwZmYNCg0KYm9keQ0K\n--b--\n";
  EXPECT_EQ(ParseBodyOk(body).returned_probe_token, "v=1; id=00ff");
}

TEST(ParseDsnTest, ReturnedHeadersInQuotedPrintableAreDecoded) {
  const std::string body =
      "--b\nContent-Type: message/delivery-status\n\n" + kRecipient +
      "--b\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: quoted-printable\n\n"
      "X-Mailpulse-Probe: v=3D1; id=3D00ff; mac=3Dab=\n+c=3D\n\n--b--\n";
  EXPECT_EQ(ParseBodyOk(body).returned_probe_token, "v=1; id=00ff; mac=ab+c=");
}

}  // namespace
}  // namespace mailpulse::dsn_test
