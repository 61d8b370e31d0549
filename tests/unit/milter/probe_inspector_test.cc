// The milter's probe handling, fed as the libmilter callbacks would (milter/core/
// probe_inspector.h): sightings with hop stamps, deliveries to sinks, invalid tokens, bounces.
#include "milter/core/probe_inspector.h"

#include <gtest/gtest.h>

#include <string>

namespace mailpulse {
namespace {

constexpr std::int64_t kNow = 1795500000LL * 1000000;  // µs
constexpr char kId[] = "0123456789abcdef0123456789abcdef";
constexpr char kSink[] = "probe-sink@example.org";
constexpr char kReturn[] = "probe-return@example.org";

ProbeKey Key(char fill = 'k') { return *ProbeKey::FromBytes(std::string(40, fill)); }

class ProbeInspectorTest : public ::testing::Test {
 protected:
  ProbeInspectorTest() : key_(Key()) {
    policy_.key = &key_;
    policy_.replay = &replay_;
    policy_.hop = "edge";
    policy_.sinks = {kSink};
    policy_.return_paths = {kReturn};
  }

  std::string Token(const ProbeKey& key, std::int64_t t = kNow - 1000000, const char* id = kId) {
    return *SignProbeToken(key, id, t, "probe-1");
  }

  // One message through a fresh connection: MAIL, RCPTs, headers, body, end of message.
  ProbeVerdict Deliver(const std::vector<std::string>& rcpts,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       const std::string& body = "Hello.\r\n") {
    ProbeInspector inspector(&policy_);
    inspector.OnConnect(kNow - 3000, "192.0.2.7");
    inspector.OnTls(true);
    inspector.OnMail(kNow - 2000);
    for (const std::string& r : rcpts) inspector.OnRcpt("<" + r + ">");
    for (const auto& [name, value] : headers) inspector.OnHeader(name, value);
    if (inspector.WantsBody()) inspector.OnBody(body);
    return inspector.OnEndOfMessage(kNow, "4XyZ1");
  }

  ProbeKey key_;
  ReplayGuard replay_;
  ProbePolicy policy_;
};

TEST_F(ProbeInspectorTest, AValidTokenBecomesASightingStampedAboveEverything) {
  const ProbeVerdict v = Deliver({"alice@example.org"}, {{"X-Mailpulse-Probe", Token(key_)}});
  ASSERT_TRUE(v.sighting.has_value());
  EXPECT_EQ(v.invalid, TokenProblem::kNone);
  const proto::HopSighting& s = *v.sighting;
  EXPECT_EQ(s.probe_id(), kId);
  EXPECT_EQ(s.probe_source(), "probe-1");
  EXPECT_EQ(s.hop(), "edge");
  EXPECT_EQ(s.queue_id(), "4XyZ1");
  EXPECT_EQ(s.client_address(), "192.0.2.7");
  EXPECT_TRUE(s.tls());
  EXPECT_EQ(s.connect_unix_us(), kNow - 3000);
  EXPECT_EQ(s.mail_unix_us(), kNow - 2000);
  EXPECT_EQ(s.eom_unix_us(), kNow);
  EXPECT_FALSE(s.delivered());
  EXPECT_FALSE(v.discard);
  ASSERT_EQ(v.edits.size(), 1u);
  EXPECT_EQ(v.edits[0].kind, HeaderEdit::Kind::kInsertFirst);
  EXPECT_EQ(v.edits[0].name, "X-Mailpulse-Hop");
  StatusOr<HopStampFields> stamp = ParseHopStamp(v.edits[0].value);
  ASSERT_TRUE(stamp.ok()) << v.edits[0].value;
  EXPECT_EQ(stamp->hop, "edge");
  EXPECT_EQ(stamp->time_unix_us, kNow);
  EXPECT_EQ(stamp->queue_id, "4XyZ1");
}

TEST_F(ProbeInspectorTest, HeaderNamesAreMatchedInAnyCase) {
  EXPECT_TRUE(Deliver({"alice@example.org"}, {{"x-mailpulse-PROBE", Token(key_)}}).sighting);
}

TEST_F(ProbeInspectorTest, OnlySinkRecipientsMeanDeliveredAndDiscardWhenAsked) {
  ProbeVerdict v = Deliver({"Probe-Sink@Example.org"}, {{"X-Mailpulse-Probe", Token(key_)}});
  ASSERT_TRUE(v.sighting);
  EXPECT_TRUE(v.sighting->delivered());
  EXPECT_FALSE(v.discard);
  policy_.discard_at_sinks = true;
  v = Deliver({kSink},
              {{"X-Mailpulse-Probe", Token(key_, kNow - 5, "11112222333344445555666677778888")}});
  ASSERT_TRUE(v.sighting);
  EXPECT_TRUE(v.discard);
  EXPECT_TRUE(v.sighting->discarded());
}

TEST_F(ProbeInspectorTest, ASinkAmongOtherRecipientsIsNoDelivery) {
  policy_.discard_at_sinks = true;
  const ProbeVerdict v =
      Deliver({kSink, "alice@example.org"}, {{"X-Mailpulse-Probe", Token(key_)}});
  ASSERT_TRUE(v.sighting);
  EXPECT_FALSE(v.sighting->delivered());
  EXPECT_FALSE(v.discard);  // real mail is never discarded
}

TEST_F(ProbeInspectorTest, AForgedTokenIsInvalidAndNoSighting) {
  const ProbeKey other = Key('x');
  ProbeVerdict v = Deliver({kSink}, {{"X-Mailpulse-Probe", Token(other)}});
  EXPECT_FALSE(v.sighting);
  EXPECT_EQ(v.invalid, TokenProblem::kMac);
  EXPECT_TRUE(v.edits.empty());  // not stripped unless asked
  EXPECT_FALSE(v.discard);
  policy_.strip_invalid = true;
  v = Deliver({kSink}, {{"X-Mailpulse-Probe", "v=1; id=nonsense"}});
  EXPECT_EQ(v.invalid, TokenProblem::kMalformed);
  ASSERT_EQ(v.edits.size(), 1u);
  EXPECT_EQ(v.edits[0].kind, HeaderEdit::Kind::kDelete);
  EXPECT_EQ(v.edits[0].index, 1);
}

TEST_F(ProbeInspectorTest, TwoTokenHeadersAreMalformedAndBothStripped) {
  policy_.strip_invalid = true;
  const std::string t = Token(key_);
  const ProbeVerdict v =
      Deliver({kSink}, {{"X-Mailpulse-Probe", t}, {"Subject", "x"}, {"X-Mailpulse-Probe", t}});
  EXPECT_FALSE(v.sighting);
  EXPECT_EQ(v.invalid, TokenProblem::kMalformed);
  ASSERT_EQ(v.edits.size(), 2u);
  EXPECT_EQ(v.edits[0].index, 2);  // the last first, so the earlier index stays right
  EXPECT_EQ(v.edits[1].index, 1);
}

TEST_F(ProbeInspectorTest, StaleAndReplayedTokensAreInvalid) {
  EXPECT_EQ(
      Deliver({kSink}, {{"X-Mailpulse-Probe", Token(key_, kNow - 2 * 3600LL * 1000000)}}).invalid,
      TokenProblem::kStale);
  const std::string t = Token(key_);
  EXPECT_TRUE(Deliver({kSink}, {{"X-Mailpulse-Probe", t}}).sighting);
  const ProbeVerdict again = Deliver({kSink}, {{"X-Mailpulse-Probe", t}});
  EXPECT_FALSE(again.sighting);
  EXPECT_EQ(again.invalid, TokenProblem::kReplayed);
  policy_.hop = "mx";  // the same message at the next hop is no replay
  EXPECT_TRUE(Deliver({kSink}, {{"X-Mailpulse-Probe", t}}).sighting);
}

TEST_F(ProbeInspectorTest, WithoutAKeyNothingIsLookedAt) {
  policy_.key = nullptr;
  const ProbeVerdict v = Deliver({kSink}, {{"X-Mailpulse-Probe", Token(key_)}});
  EXPECT_FALSE(v.sighting);
  EXPECT_EQ(v.invalid, TokenProblem::kNone);
  EXPECT_TRUE(v.edits.empty());
}

TEST_F(ProbeInspectorTest, AnAbortedTransactionLeavesNothingForTheNext) {
  ProbeInspector inspector(&policy_);
  inspector.OnConnect(kNow, "192.0.2.7");
  inspector.OnMail(kNow);
  inspector.OnRcpt(kSink);
  inspector.OnHeader("X-Mailpulse-Probe", Token(key_));
  inspector.OnAbort();
  inspector.OnMail(kNow);
  inspector.OnRcpt("alice@example.org");
  inspector.OnHeader("Subject", "ordinary mail");
  const ProbeVerdict v = inspector.OnEndOfMessage(kNow, "4XyZ2");
  EXPECT_FALSE(v.sighting);
  EXPECT_EQ(v.invalid, TokenProblem::kNone);
}

std::string Dsn(const std::string& returned_token) {
  return "This is a MIME-encapsulated message.\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
         "It failed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
         "Reporting-MTA: dns; mx.example.net\r\n\r\n"
         "Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
         "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: User unknown\r\n\r\n"
         "--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: <probe-return@example.org>\r\n"
         "X-Mailpulse-Probe: " +
         returned_token + "\r\nSubject: mailpulse probe\r\n\r\n--b--\r\n";
}

constexpr char kReportType[] = "multipart/report; report-type=delivery-status; boundary=\"b\"";

TEST_F(ProbeInspectorTest, ADsnToTheReturnPathReturningOurTokenIsABounce) {
  // Days later: a bounce's age does not matter.
  const std::string token = Token(key_, kNow - 3 * 86400LL * 1000000);
  const ProbeVerdict v = Deliver({kReturn}, {{"Content-Type", kReportType}}, Dsn(token));
  ASSERT_TRUE(v.bounce.has_value());
  EXPECT_FALSE(v.sighting);
  EXPECT_EQ(v.bounce->probe_id(), kId);
  EXPECT_EQ(v.bounce->hop(), "edge");
  EXPECT_EQ(v.bounce->reporting_mta(), "mx.example.net");
  EXPECT_TRUE(v.bounce->token_verified());
  ASSERT_EQ(v.bounce->recipients_size(), 1);
  EXPECT_EQ(v.bounce->recipients(0).final_recipient(), "nobody@example.org");
  EXPECT_EQ(v.bounce->recipients(0).action(), "failed");
  EXPECT_EQ(v.bounce->recipients(0).status(), "5.1.1");
  EXPECT_NE(v.bounce->recipients(0).diagnostic_code().find("User unknown"), std::string::npos);
  EXPECT_TRUE(v.edits.empty());  // a DSN is not stamped
}

TEST_F(ProbeInspectorTest, ADelayWarningIsNoBounce) {
  std::string dsn = Dsn(Token(key_));
  const std::size_t at = dsn.find("Action: failed");
  dsn.replace(at, 14, "Action: delayed");
  const ProbeVerdict v = Deliver({kReturn}, {{"Content-Type", kReportType}}, dsn);
  EXPECT_FALSE(v.bounce);
  EXPECT_EQ(v.invalid, TokenProblem::kNone);
}

TEST_F(ProbeInspectorTest, ADsnWithAForgedReturnedTokenIsNoBounce) {
  const ProbeVerdict v = Deliver({kReturn}, {{"Content-Type", kReportType}}, Dsn(Token(Key('z'))));
  EXPECT_FALSE(v.bounce);
  EXPECT_EQ(v.invalid, TokenProblem::kMac);
}

TEST_F(ProbeInspectorTest, ADsnToAnotherAddressIsNotRead) {
  ProbeInspector inspector(&policy_);
  inspector.OnConnect(kNow, "192.0.2.7");
  inspector.OnMail(kNow);
  inspector.OnRcpt("alice@example.org");
  inspector.OnHeader("Content-Type", kReportType);
  EXPECT_FALSE(inspector.WantsBody());
  policy_.return_paths.clear();  // empty: DSNs to anyone are read
  ProbeInspector any(&policy_);
  any.OnMail(kNow);
  any.OnRcpt("alice@example.org");
  any.OnHeader("Content-Type", kReportType);
  EXPECT_TRUE(any.WantsBody());
}

TEST_F(ProbeInspectorTest, OrdinaryMailBodiesAreNeverKept) {
  ProbeInspector inspector(&policy_);
  inspector.OnMail(kNow);
  inspector.OnRcpt(kReturn);
  inspector.OnHeader("Content-Type", "text/plain; charset=us-ascii");
  EXPECT_FALSE(inspector.WantsBody());
}

}  // namespace
}  // namespace mailpulse
