// SessionAccounting fed the callback sequences Postfix produces (see DESIGN notes in
// docs/architecture.md), checked through the metrics they produce.
#include "milter/core/session_accounting.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace mailpulse {
namespace {

class SessionAccountingTest : public ::testing::Test {
 protected:
  SessionAccountingTest()
      : classifier_(*ClientClassifier::Create({"192.0.2.0/24"})), counters_(&registry_) {}

  std::unique_ptr<SessionAccounting> Connect(const char* ip, std::uint16_t port = 40000) {
    auto s = std::make_unique<SessionAccounting>(&counters_, &classifier_);
    s->OnConnect(ClientEndpoint{IpAddress::Parse(ip), port});
    s->OnHelo("");
    return s;
  }

  std::uint64_t Count(const std::string& what, Direction d = Direction::kInbound) {
    proto::TrafficSnapshot snap;
    counters_.Snapshot(&snap);
    const proto::TrafficCounters& c = d == Direction::kInbound    ? snap.inbound()
                                      : d == Direction::kOutbound ? snap.outbound()
                                                                  : snap.local();
    if (what == "connections") return c.connections();
    if (what == "tls") return c.tls_connections();
    if (what == "messages") return c.messages();
    if (what == "recipients") return c.recipients();
    if (what == "bytes") return c.bytes();
    if (what == "aborts") return c.aborts();
    ADD_FAILURE() << "no counter " << what;
    return 0;
  }

  std::uint64_t Rejects(const std::string& dir, const std::string& stage,
                        const std::string& status) {
    proto::TrafficSnapshot snap;
    counters_.Snapshot(&snap);
    for (const auto& r : snap.rejects()) {
      if (r.direction() == dir && r.stage() == stage && r.status() == status) return r.count();
    }
    return 0;
  }

  static void SendMessage(SessionAccounting& s, int recipients) {
    s.OnMail("", "");
    for (int i = 0; i < recipients; ++i) s.OnRcpt("smtp", "sink.test", "user@sink.test");
    s.OnHeader("Subject", "hello");  // "Subject: hello\r\n" = 16 bytes
    s.OnBody(100);
    s.OnEndOfMessage();
  }

  MetricsRegistry registry_;
  ClientClassifier classifier_;
  TrafficCounters counters_;
};

TEST_F(SessionAccountingTest, OneMessageCountsMessageRecipientsBytesAndConnectionAtClose) {
  auto s = Connect("198.51.100.7");
  SendMessage(*s, 2);
  EXPECT_EQ(Count("connections"), 0u) << "connections are counted when they end";
  s->OnClose();
  EXPECT_EQ(Count("connections"), 1u);
  EXPECT_EQ(Count("messages"), 1u);
  EXPECT_EQ(Count("recipients"), 2u);
  EXPECT_EQ(Count("bytes"), 16u + 2u + 100u);
  EXPECT_EQ(Count("aborts"), 0u);
}

TEST_F(SessionAccountingTest, SeveralMessagesOnOneConnectionWithoutAbortBetween) {
  auto s = Connect("198.51.100.7");
  SendMessage(*s, 1);
  SendMessage(*s, 3);
  SendMessage(*s, 1);
  s->OnClose();
  EXPECT_EQ(Count("connections"), 1u);
  EXPECT_EQ(Count("messages"), 3u);
  EXPECT_EQ(Count("recipients"), 5u);
  EXPECT_EQ(Count("aborts"), 0u);
}

TEST_F(SessionAccountingTest, QuitAfterRcptIsAnAbort) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("smtp", "sink.test", "a@sink.test");
  s->OnAbort();
  s->OnClose();
  EXPECT_EQ(Count("aborts"), 1u);
  EXPECT_EQ(Count("messages"), 0u);
  EXPECT_EQ(Count("recipients"), 0u) << "recipients count only with their message";
}

TEST_F(SessionAccountingTest, DropMidDataWithoutAbortCallbackCountsAbortAtClose) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("smtp", "sink.test", "a@sink.test");
  s->OnHeader("Subject", "partial");
  s->OnClose();
  EXPECT_EQ(Count("aborts"), 1u);
  EXPECT_EQ(Count("bytes"), 0u);
}

TEST_F(SessionAccountingTest, AbortAfterCompletedMessageIsNotCounted) {
  auto s = Connect("198.51.100.7");
  SendMessage(*s, 1);
  s->OnAbort();  // Postfix may send abort at QUIT after a finished transaction
  s->OnClose();
  EXPECT_EQ(Count("aborts"), 0u);
}

TEST_F(SessionAccountingTest, AllRecipientsRejectedThenQuitIsRejectNotAbort) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("error", "5.7.1", "<x@other.test>: Relay access denied");
  s->OnAbort();
  s->OnClose();
  EXPECT_EQ(Count("aborts"), 0u);
  EXPECT_EQ(Rejects("inbound", "rcpt", "5.7.1"), 1u);
}

TEST_F(SessionAccountingTest, RejectStageComesFromPostfixReplyText) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("error", "5.1.1",
            "<nobody@sink.test>: Recipient address rejected: User unknown in relay recipient "
            "table");
  s->OnRcpt("error", "5.7.1", "<unknown[198.51.100.7]>: Client host rejected: go away");
  s->OnRcpt("error", "5.7.1", "<bad.example>: Helo command rejected: no thanks");
  s->OnRcpt("error", "5.1.8", "<a@bad.test>: Sender address rejected: Domain not found");
  s->OnRcpt("error", "4.7.1", "Service unavailable; Client host [198.51.100.7] blocked using x");
  s->OnClose();
  EXPECT_EQ(Rejects("inbound", "rcpt", "5.1.1"), 1u);
  EXPECT_EQ(Rejects("inbound", "connect", "5.7.1"), 1u);
  EXPECT_EQ(Rejects("inbound", "helo", "5.7.1"), 1u);
  EXPECT_EQ(Rejects("inbound", "mail", "5.1.8"), 1u);
  EXPECT_EQ(Rejects("inbound", "connect", "4.7.1"), 1u);
}

TEST_F(SessionAccountingTest, MixedAcceptedAndRejectedRecipients) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("smtp", "sink.test", "a@sink.test");
  s->OnRcpt("error", "5.1.1", "<b@sink.test>: Recipient address rejected: User unknown");
  s->OnRcpt("smtp", "sink.test", "c@sink.test");
  MessageSummary m = s->OnEndOfMessage();
  EXPECT_EQ(m.recipients, 2u);
  EXPECT_EQ(m.rejected_recipients, 1u);
  s->OnClose();
  EXPECT_EQ(Count("recipients"), 2u);
}

TEST_F(SessionAccountingTest, MalformedEnhancedCodeBecomesUnknown) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  s->OnRcpt("error", "garbage\x01", "whatever");
  s->OnRcpt("error", "", "");
  s->OnClose();
  EXPECT_EQ(Rejects("inbound", "rcpt", "unknown"), 2u);
}

TEST_F(SessionAccountingTest, TrustedNetworkIsOutbound) {
  auto s = Connect("192.0.2.44");
  SendMessage(*s, 1);
  s->OnClose();
  EXPECT_EQ(Count("messages", Direction::kOutbound), 1u);
  EXPECT_EQ(Count("connections", Direction::kOutbound), 1u);
  EXPECT_EQ(Count("messages"), 0u);
}

TEST_F(SessionAccountingTest, AuthenticatedClientTurnsOutboundForMessagesAndConnection) {
  auto s = Connect("198.51.100.7");
  s->OnMail("alice", "TLSv1.3");
  s->OnRcpt("smtp", "x.test", "bob@x.test");
  s->OnBody(10);
  MessageSummary m = s->OnEndOfMessage();
  EXPECT_EQ(m.direction, Direction::kOutbound);
  EXPECT_TRUE(m.authenticated);
  s->OnClose();
  EXPECT_EQ(Count("connections", Direction::kOutbound), 1u);
  EXPECT_EQ(Count("tls", Direction::kOutbound), 1u);
  EXPECT_EQ(Count("connections"), 0u);
}

TEST_F(SessionAccountingTest, TlsSeenAtSecondHeloCountsTlsConnection) {
  auto s = Connect("198.51.100.7");
  s->OnHelo("TLSv1.3");  // EHLO again after STARTTLS
  s->OnClose();
  EXPECT_EQ(Count("tls"), 1u);
  EXPECT_EQ(Count("connections"), 1u);
}

TEST_F(SessionAccountingTest, LocalSubmissionIsLocalEvenIfLoopbackIsTrusted) {
  SessionAccounting s(&counters_, &classifier_);
  s.OnConnect(ClientEndpoint{IpAddress::Parse("127.0.0.1"), 0});
  SendMessage(s, 1);
  s.OnClose();
  EXPECT_EQ(Count("messages", Direction::kLocal), 1u);
  EXPECT_EQ(Count("connections", Direction::kLocal), 1u);
}

TEST_F(SessionAccountingTest, CloseIsIdempotentAndDestructorCountsOnce) {
  {
    auto s = Connect("198.51.100.7");
    s->OnClose();
    s->OnClose();
  }
  { auto s = Connect("198.51.100.8"); }
  EXPECT_EQ(Count("connections"), 2u);
}

TEST_F(SessionAccountingTest, EventsWithoutConnectAreCountedButNotTheConnection) {
  SessionAccounting s(&counters_, &classifier_);
  s.OnRcpt("smtp", "x", "y");  // no MAIL, no connect: must not crash
  s.OnEndOfMessage();
  s.OnClose();
  EXPECT_EQ(Count("messages"), 1u);
  EXPECT_EQ(Count("connections"), 0u);
}

TEST_F(SessionAccountingTest, ThousandsOfRecipientsAndHugeHeaders) {
  auto s = Connect("198.51.100.7");
  s->OnMail("", "");
  for (int i = 0; i < 5000; ++i) s->OnRcpt("smtp", "sink.test", "u@sink.test");
  const std::string huge(1 << 20, 'x');
  s->OnHeader("X-Huge", huge);
  s->OnHeader(std::string("X-Bin\0ary", 9), std::string("\x80\xff\0v", 4));
  s->OnEndOfMessage();
  s->OnClose();
  EXPECT_EQ(Count("recipients"), 5000u);
  EXPECT_EQ(Count("bytes"), (6u + 2 + huge.size() + 2) + (9u + 2 + 4 + 2) + 2);
}

TEST(RejectStageTest, UnknownTextIsRcpt) {
  EXPECT_EQ(ClassifyRejectStage("User unknown"), RejectStage::kRcpt);
  EXPECT_EQ(ClassifyRejectStage(""), RejectStage::kRcpt);
  EXPECT_EQ(ClassifyRejectStage("<DATA>: Data command rejected: Multi-recipient bounce"),
            RejectStage::kData);
}

TEST(EnhancedStatusTest, AcceptsOnlyRfc3463Codes) {
  EXPECT_EQ(NormalizeEnhancedStatus("5.7.1"), "5.7.1");
  EXPECT_EQ(NormalizeEnhancedStatus("4.2.0"), "4.2.0");
  EXPECT_EQ(NormalizeEnhancedStatus("5.100.999"), "5.100.999");
  EXPECT_EQ(NormalizeEnhancedStatus("3.1.1"), "unknown");
  EXPECT_EQ(NormalizeEnhancedStatus("5.1"), "unknown");
  EXPECT_EQ(NormalizeEnhancedStatus("5.1.1.1"), "unknown");
  EXPECT_EQ(NormalizeEnhancedStatus("5.1000.1"), "unknown");
  EXPECT_EQ(NormalizeEnhancedStatus("sink.test"), "unknown");
}

}  // namespace
}  // namespace mailpulse
