#include "probe/alerts/notice_payload.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace mailpulse {
namespace {

using nlohmann::json;

Notice Firing() {
  Notice n{NoticeKind::kFiring, {}, {"oncall"}, 1'800'000'060};
  Alert& a = n.alert;
  a.id = "smtp-down/mx1";
  a.rule = "smtp-down";
  a.subject = "mx1";
  a.severity = "critical";
  a.state = AlertState::kFiring;
  a.summary = "mx1: 421 4.3.2 Service shutting down (3 failed checks in a row)";
  a.details = {{"phase", "banner"}, {"reply", "421 4.3.2 Service shutting down"}};
  a.since = 1'800'000'000;
  a.fired_at = 1'800'000'060;
  return n;
}

TEST(NoticePayloadTest, TheWebhookDocumentCarriesTheAlertAndItsDetails) {
  const json j = json::parse(NoticeJson(Firing(), "probe1"));
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["status"], "firing");
  EXPECT_EQ(j["kind"], "firing");
  EXPECT_EQ(j["id"], "smtp-down/mx1");
  EXPECT_EQ(j["severity"], "critical");
  EXPECT_EQ(j["details"]["phase"], "banner");
  EXPECT_EQ(j["details"]["reply"], "421 4.3.2 Service shutting down");
  EXPECT_EQ(j["since"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(j["fired_at"], "2027-01-15T08:01:00Z");
  EXPECT_EQ(j["probe"], "probe1");
  Notice resolved = Firing();
  resolved.kind = NoticeKind::kResolved;
  resolved.alert.recovery = "mx1: checks pass again";
  const json r = json::parse(NoticeJson(resolved, "p"));
  EXPECT_EQ(r["status"], "resolved");
  EXPECT_EQ(r["text"],
            "[RESOLVED] critical smtp-down mx1: mx1: checks pass again (was: mx1: 421 4.3.2 "
            "Service shutting down (3 failed checks in a row))");
}

TEST(NoticePayloadTest, EachChatGetsTheShapeItsIncomingWebhookAccepts) {
  const Notice n = Firing();
  for (NotifierKind k : {NotifierKind::kSlack, NotifierKind::kMattermost}) {
    const json j = json::parse(ChatPayload(k, n, "probe1"));
    ASSERT_TRUE(j["text"].is_string());
    const std::string text = j["text"];
    EXPECT_EQ(text.rfind("[FIRING] critical smtp-down mx1: mx1: 421 4.3.2", 0), 0u) << text;
    EXPECT_NE(text.find("phase: banner"), std::string::npos);
    EXPECT_NE(text.find("mailpulse-probe ack smtp-down/mx1"), std::string::npos);
  }
  const json discord = json::parse(ChatPayload(NotifierKind::kDiscord, n, "probe1"));
  ASSERT_TRUE(discord["content"].is_string());
  EXPECT_FALSE(discord.contains("text"));
  const json teams = json::parse(ChatPayload(NotifierKind::kTeams, n, "probe1"));
  EXPECT_EQ(teams["type"], "message");
  const json& card = teams["attachments"][0];
  EXPECT_EQ(card["contentType"], "application/vnd.microsoft.card.adaptive");
  EXPECT_EQ(card["content"]["type"], "AdaptiveCard");
  EXPECT_EQ(card["content"]["body"][0]["text"], "FIRING: smtp-down mx1");
  EXPECT_EQ(card["content"]["body"][2]["facts"][0]["title"], "phase");
}

TEST(NoticePayloadTest, DiscordContentStaysWithinItsLimit) {
  Notice n = Firing();
  n.alert.summary = std::string(5000, 'x');
  const json j = json::parse(ChatPayload(NotifierKind::kDiscord, n, "p"));
  EXPECT_LE(j["content"].get<std::string>().size(), 2000u);
}

TEST(NoticePayloadTest, TheCommandEnvironmentNamesTheAlert) {
  const auto env = NoticeEnvironment(Firing(), "probe1");
  const auto value = [&](const std::string& k) {
    for (const auto& [key, v] : env) {
      if (key == k) return v;
    }
    return std::string("(missing)");
  };
  EXPECT_EQ(value("MAILPULSE_ALERT_STATUS"), "firing");
  EXPECT_EQ(value("MAILPULSE_ALERT_ID"), "smtp-down/mx1");
  EXPECT_EQ(value("MAILPULSE_ALERT_SEVERITY"), "critical");
  EXPECT_EQ(value("MAILPULSE_ALERT_PROBE"), "probe1");
}

TEST(NoticePayloadTest, TheEmailHasSafeHeadersAndSaysHowToAcknowledge) {
  Notice n = Firing();
  n.alert.subject = "mx1\r\nBcc: victim@example.net";  // nothing may inject a header
  const std::string m =
      NoticeEmail(n, "probe1", "alerts@example.net", {"ops@example.net"}, 1'800'000'060);
  EXPECT_NE(m.find("Subject: [mailpulse] FIRING smtp-down mx1  Bcc: victim@example.net\n"),
            std::string::npos)
      << m;
  const std::string head = m.substr(0, m.find("\n\n"));
  EXPECT_EQ(head.find("\nBcc:"), std::string::npos) << head;
  EXPECT_NE(m.find("Date: Fri, 15 Jan 2027 08:01:00 +0000\n"), std::string::npos);
  EXPECT_NE(m.find("To: <ops@example.net>\n"), std::string::npos);
  EXPECT_NE(m.find("Auto-Submitted: auto-generated\n"), std::string::npos);
  EXPECT_NE(m.find("\nreply: 421 4.3.2 Service shutting down\n"), std::string::npos);
  EXPECT_NE(m.find("Acknowledge: mailpulse-probe ack smtp-down/mx1"), std::string::npos);
}

}  // namespace
}  // namespace mailpulse
