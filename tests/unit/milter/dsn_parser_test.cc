// DsnBoundary and ParseDsn on delivery status notifications as real MTAs write them, and on
// what an attacker or a broken MTA might send instead.
//
// The fixtures in dsn/ are written for these tests (example domains, RFC 5737 addresses, our
// own probe tokens) but follow the layout of real reports field by field:
// - Postfix (postfix-failed-*.eml): Postfix's bounce(8) templates as seen in the sample
//   lhost-postfix-30.eml of sisimai/go-sisimai and in Postfix bounces quoted in public test
//   suites (the mailchannels and "nullMX" text/rfc822-headers reports found with the code
//   search): "This is the mail system at host ...", X-Postfix-Queue-ID/X-Postfix-Sender/
//   Arrival-Date, folded Diagnostic-Code with four spaces, "X-Postfix;" diagnostics,
//   Content-Description on every part, message/rfc822 or text/rfc822-headers.
// - Sendmail (sendmail-*.eml): sendmail-05.eml of sisimai/p5-sisimai and sendmail's
//   savemail.c: a first part with no header at all, "RFC822;" and "DNS;" in upper case,
//   "Action: delivered (to mailbox)" beside a failure, Last-Attempt-Date, Will-Retry-Until in
//   a delay warning, text/rfc822-headers.
// - Exim (exim-failed.eml): email-exim-60.eml of sisimai/rb-sisimai and Exim's deliver.c: no
//   preamble, a bare boundary, "Content-type" in lower case, Action before Final-Recipient,
//   "rfc822;" with no space, Status always 5.0.0, and with EXPERIMENTAL_DSN_INFO a second
//   "Remote-MTA: X-ip;" plus X-Exim-Diagnostic.
// - Exchange / Microsoft 365 (exchange-failed.eml): email-exchange2007-04.eml of
//   sisimai/rb-sisimai and email-office365-04.eml of sisimai/p5-sisimai: CRLF, a quoted UUID
//   boundary, a nested multipart/alternative notification in quoted-printable that repeats
//   the original headers, "dns;"/"smtp;" with no space, Original-Recipient before
//   Final-Recipient, X-Display-Name, empty lines after the last block, and returned headers
//   in lower case.
#include "milter/core/dsn_parser.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "tests/unit/milter/dsn_test_support.h"

namespace mailpulse::dsn_test {
namespace {

// --- Real reports --------------------------------------------------------------------------

TEST(DsnFixtureTest, PostfixBounceReturningTheWholeMessage) {
  const DsnReport r = ParseOk(ReadFixture("postfix-failed-message.eml"));
  EXPECT_EQ(r.reporting_mta, "mx1.example.net");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "nobody@sink.example.org");
  EXPECT_EQ(r.recipients[0].action, "failed");
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
  EXPECT_EQ(r.recipients[0].remote_mta, "mx.sink.example.org");
  EXPECT_EQ(r.recipients[0].diagnostic_code,
            "smtp; 550 5.1.1 <nobody@sink.example.org>: Recipient address rejected: User "
            "unknown in virtual mailbox table");
  EXPECT_EQ(r.returned_probe_token, kToken);
  EXPECT_EQ(r.omitted_recipients, 0u);
}

TEST(DsnFixtureTest, PostfixBounceReturningHeadersOnlyUnfoldsTheToken) {
  const DsnReport r = ParseOk(ReadFixture("postfix-failed-headers.eml"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "probe@nullmx.example.org");
  EXPECT_EQ(r.recipients[0].status, "5.1.10");
  EXPECT_EQ(r.recipients[0].diagnostic_code,
            "X-Postfix; Domain nullmx.example.org does not accept mail (nullMX)");
  EXPECT_EQ(r.recipients[0].remote_mta, "");  // the mail never reached a remote MTA
  EXPECT_EQ(r.returned_probe_token,
            "v=1; id=0a1b2c3d4e5f60718293a4b5c6d7e8f9; t=1764622927000042; src=probe-ams2; "
            "mac=PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0=");
}

TEST(DsnFixtureTest, SendmailReportOfOneFailedAndOneDeliveredRecipient) {
  const DsnReport r = ParseOk(ReadFixture("sendmail-failed-and-delivered.eml"));
  EXPECT_EQ(r.reporting_mta, "relay.example.net");
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].final_recipient, "nobody@sink.example.org");
  EXPECT_EQ(r.recipients[0].action, "failed");
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
  EXPECT_EQ(r.recipients[0].remote_mta, "mx.sink.example.org");
  EXPECT_EQ(r.recipients[0].diagnostic_code,
            "SMTP; 550 5.1.1 <nobody@sink.example.org>... User unknown");
  EXPECT_EQ(r.recipients[1].final_recipient, "postmaster@sink.example.org");
  EXPECT_EQ(r.recipients[1].action, "delivered");  // "(to mailbox)" is Sendmail's comment
  EXPECT_EQ(r.recipients[1].status, "2.0.0");
  EXPECT_EQ(r.recipients[1].diagnostic_code, "");
  EXPECT_EQ(r.returned_probe_token.substr(0, 42), "v=1; id=77e1c0de4b2a49f3a1d05c6e8f9b0a12; ");
}

TEST(DsnFixtureTest, SendmailDelayWarningIsDelayedWithStatus447) {
  const DsnReport r = ParseOk(ReadFixture("sendmail-delayed.eml"));
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "probe@slow.example.org");
  EXPECT_EQ(r.recipients[0].action, "delayed");
  EXPECT_EQ(r.recipients[0].status, "4.4.7");
  EXPECT_EQ(r.recipients[0].remote_mta, "mx.slow.example.org");
  EXPECT_EQ(r.recipients[0].diagnostic_code, "");
  EXPECT_NE(r.returned_probe_token.find("id=c4f2a9e07b1d4e6f8a3c5b7d9e1f2a3b"), std::string::npos);
}

TEST(DsnFixtureTest, EximReportKeepsTheDnsRemoteMtaOverTheIpOne) {
  const DsnReport r = ParseOk(ReadFixture("exim-failed.eml"));
  EXPECT_EQ(r.reporting_mta, "mail.example.net");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "nobody@sink.example.org");
  EXPECT_EQ(r.recipients[0].action, "failed");
  EXPECT_EQ(r.recipients[0].status, "5.0.0");
  EXPECT_EQ(r.recipients[0].remote_mta, "mx.sink.example.org");
  EXPECT_EQ(r.recipients[0].diagnostic_code,
            "smtp; 550 5.1.1 <nobody@sink.example.org>: Recipient address rejected: User "
            "unknown");
  EXPECT_EQ(r.returned_probe_token,
            "v=1; id=9e8d7c6b5a4938271605f4e3d2c1b0a9; t=1764621555500000; src=probe-lon1; "
            "mac=P3m7e0NbBTIWUdrv03TNxoHcBvqmXjdOODN7iMoEbeo=");
}

TEST(DsnFixtureTest, ExchangeReportWithCrlfNestedAlternativeAndLowerCaseReturnedHeaders) {
  const std::string eml = ReadFixture("exchange-failed.eml");
  ASSERT_NE(eml.find("\r\n"), std::string::npos);
  const DsnReport r = ParseOk(eml);
  EXPECT_EQ(r.reporting_mta, "AM9PR01MB7412.eurprd01.prod.exchangelabs.com");
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].final_recipient, "nobody@contoso.example");
  EXPECT_EQ(r.recipients[0].status, "5.1.10");
  EXPECT_EQ(r.recipients[0].diagnostic_code,
            "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
            "address lookup");
  EXPECT_EQ(r.recipients[0].remote_mta, "");
  EXPECT_EQ(r.recipients[1].final_recipient, "someone@fabrikam.example");
  EXPECT_EQ(r.recipients[1].status, "5.4.4");
  EXPECT_EQ(r.recipients[1].diagnostic_code,
            "smtp;554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain");
  EXPECT_EQ(r.recipients[1].remote_mta, "fabrikam.example");
  EXPECT_EQ(r.returned_probe_token,
            "v=1; id=3b8e41d27c5a4f09b6e2d1c0a9f8e7d6; t=1764621556000001; src=probe-fra1; "
            "mac=ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=");
}

TEST(DsnFixtureTest, EveryFixtureReadsTheSameWithLfAndWithCrlf) {
  for (const std::string& name : kFixtures) {
    const std::string eml = ReadFixture(name);
    EXPECT_EQ(Describe(ParseOk(WithLf(eml))), Describe(ParseOk(WithCrlf(eml)))) << name;
  }
}

// The milter may keep only the start of a report; wherever it is cut, what is reported was in
// the report as it stands, and nothing is reported half: a token is whole or absent.
TEST(DsnFixtureTest, CutAnywhereEveryFieldIsWholeOrAbsent) {
  for (const std::string& name : kFixtures) {
    const std::string eml = ReadFixture(name);
    const DsnReport full = ParseOk(eml);
    const Message m = Split(eml);
    const std::string boundary = *DsnBoundary(m.content_type);
    std::size_t reports = 0;
    std::size_t with_token = 0;
    for (std::size_t cut = 0; cut <= m.body.size(); ++cut) {
      StatusOr<DsnReport> r = ParseDsn(std::string_view(m.body).substr(0, cut), boundary);
      if (!r.ok()) continue;
      ++reports;
      if (!r->returned_probe_token.empty()) ++with_token;
      ASSERT_LE(r->recipients.size(), full.recipients.size()) << name << " cut " << cut;
      EXPECT_TRUE(r->returned_probe_token.empty() ||
                  r->returned_probe_token == full.returned_probe_token)
          << name << " cut " << cut << ": " << r->returned_probe_token;
      for (std::size_t i = 0; i < r->recipients.size(); ++i) {
        const DsnRecipient& got = r->recipients[i];
        const DsnRecipient& want = full.recipients[i];
        for (const auto& [g, w] : {std::pair{got.final_recipient, want.final_recipient},
                                   {got.action, want.action},
                                   {got.status, want.status},
                                   {got.diagnostic_code, want.diagnostic_code},
                                   {got.remote_mta, want.remote_mta}}) {
          EXPECT_TRUE(g.empty() || g == w) << name << " cut " << cut << ": " << g;
        }
      }
    }
    EXPECT_GT(reports, with_token) << name;  // cuts before the token are still reports
    EXPECT_GT(with_token, 0u) << name;
    // Cut right after the returned header block, everything is there.
    const std::string sep = m.body.find("\r\n") != std::string::npos ? "\r\n\r\n" : "\n\n";
    std::string lower = m.body;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::size_t token_at = lower.rfind("x-mailpulse-probe:");  // the returned one
    ASSERT_NE(token_at, std::string::npos) << name;
    const std::size_t headers_end = m.body.find(sep, token_at) + sep.size();
    StatusOr<DsnReport> r = ParseDsn(std::string_view(m.body).substr(0, headers_end), boundary);
    ASSERT_TRUE(r.ok()) << name << ": " << r.status().message();
    EXPECT_EQ(Describe(*r), Describe(full)) << name;
  }
}

// --- DsnBoundary ---------------------------------------------------------------------------

TEST(DsnBoundaryTest, QuotedBoundaryIsUnquoted) {
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status;\r\n\tboundary=\"4B1F."
                        "1764621581/mx1.example.net\""),
            "4B1F.1764621581/mx1.example.net");
}

TEST(DsnBoundaryTest, BareBoundaryIsTakenAsWritten) {
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status; "
                        "boundary=1764621581-eximdsn-846930886"),
            "1764621581-eximdsn-846930886");
}

TEST(DsnBoundaryTest, BareBoundaryWithSlashAndEqualsIsTakenAsWritten) {
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status; boundary=ab/cd=="),
            "ab/cd==");
}

TEST(DsnBoundaryTest, TypeSubtypeAndParameterNamesAreCaseInsensitiveButTheValueIsNot) {
  EXPECT_EQ(DsnBoundary("Multipart/REPORT; Report-Type=Delivery-Status; BOUNDARY=AbC"), "AbC");
}

TEST(DsnBoundaryTest, ParametersMayComeInAnyOrder) {
  EXPECT_EQ(DsnBoundary("multipart/report; boundary=\"x\"; report-type=\"delivery-status\""), "x");
}

TEST(DsnBoundaryTest, BackslashEscapesInAQuotedStringAreUndone) {
  EXPECT_EQ(DsnBoundary(R"(multipart/report; report-type=delivery-status; boundary="a\"b\\c")"),
            "a\"b\\c");
}

TEST(DsnBoundaryTest, CommentsWhitespaceAndFoldingBetweenTokensAreIgnored) {
  EXPECT_EQ(DsnBoundary(" multipart (a (nested) comment) / report ;\r\n (why) report-type ="
                        " delivery-status (RFC 3464);\n\tboundary = \"x y\" (the end)"),
            "x y");
}

TEST(DsnBoundaryTest, JunkParametersAreSkipped) {
  EXPECT_EQ(DsnBoundary("multipart/report; @@junk@@; charset; report-type=delivery-status;;"
                        " boundary=b"),
            "b");
}

TEST(DsnBoundaryTest, OtherReportTypesAreNotADsn) {
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=disposition-notification; boundary=b"),
            std::nullopt);
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=feedback-report; boundary=b"), std::nullopt);
  EXPECT_EQ(DsnBoundary("multipart/report; boundary=b"), std::nullopt);
}

TEST(DsnBoundaryTest, OtherTypesAreNotADsn) {
  EXPECT_EQ(DsnBoundary("multipart/mixed; report-type=delivery-status; boundary=b"), std::nullopt);
  EXPECT_EQ(DsnBoundary("text/plain; report-type=delivery-status; boundary=b"), std::nullopt);
}

TEST(DsnBoundaryTest, MissingOrEmptyBoundaryIsNotADsn) {
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status"), std::nullopt);
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status; boundary=\"\""),
            std::nullopt);
  EXPECT_EQ(DsnBoundary("multipart/report; report-type=delivery-status; boundary="), std::nullopt);
}

TEST(DsnBoundaryTest, BoundaryThatCannotBeOneIsNotADsn) {
  const std::string prefix = "multipart/report; report-type=delivery-status; boundary=";
  EXPECT_EQ(DsnBoundary(prefix + std::string(201, 'b')), std::nullopt);
  EXPECT_EQ(DsnBoundary(prefix + std::string(200, 'b')), std::string(200, 'b'));
  EXPECT_EQ(DsnBoundary(prefix + "\"a\\\x01z\""), std::nullopt);
  EXPECT_EQ(DsnBoundary(prefix + "caf\xc3\xa9"), std::nullopt);
}

TEST(DsnBoundaryTest, GarbageIsNotADsn) {
  for (const char* bad : {"", ";;;", "/", "multipart/", "/report", "multipart report",
                          "multipart/report (unclosed comment; boundary=b", "\"multipart\"/x"}) {
    EXPECT_EQ(DsnBoundary(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace mailpulse::dsn_test
