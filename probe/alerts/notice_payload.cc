#include "probe/alerts/notice_payload.h"

#include <ctime>
#include <nlohmann/json.hpp>

namespace mailpulse {
namespace {

using nlohmann::json;

// RFC 3339 in UTC, to the second; "" for 0.
std::string Iso(double unix_seconds) {
  if (unix_seconds <= 0) return "";
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[32] = "";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Header-safe text: no CR or LF, no other control characters.
std::string HeaderText(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return text;
}

std::string StatusWord(const Notice& n) {
  return n.kind == NoticeKind::kResolved ? "resolved" : "firing";
}

}  // namespace

std::string NoticeStatusText(const Notice& n) {
  switch (n.kind) {
    case NoticeKind::kFiring:
      return "FIRING";
    case NoticeKind::kRepeat:
      return "FIRING (repeat)";
    case NoticeKind::kEscalated:
      return "FIRING (escalated)";
    case NoticeKind::kFlapping:
      return "FLAPPING";
    case NoticeKind::kResolved:
      return "RESOLVED";
  }
  return "FIRING";
}

std::string NoticeLine(const Notice& n) {
  const Alert& a = n.alert;
  std::string what = a.summary.empty() ? a.id : a.summary;
  if (n.kind == NoticeKind::kResolved && !a.recovery.empty()) {
    what = a.recovery + " (was: " + what + ")";
  }
  return "[" + NoticeStatusText(n) + "] " + a.severity + " " + a.rule + " " + a.subject + ": " +
         what;
}

std::string NoticeJson(const Notice& n, const std::string& probe_name) {
  const Alert& a = n.alert;
  json details = json::object();
  for (const auto& [k, v] : a.details) details[k] = v;
  return json{{"version", 1},
              {"probe", probe_name},
              {"status", StatusWord(n)},
              {"kind", NoticeKindName(n.kind)},
              {"id", a.id},
              {"rule", a.rule},
              {"subject", a.subject},
              {"severity", a.severity},
              {"summary", a.summary},
              {"recovery", a.recovery},
              {"details", details},
              {"since", Iso(a.since)},
              {"fired_at", Iso(a.fired_at)},
              {"tier", a.tier},
              {"acknowledged_by", a.acked_by},
              {"time", Iso(n.at)},
              {"text", NoticeLine(n)}}
      .dump();
}

std::string ChatPayload(NotifierKind kind, const Notice& n, const std::string& probe_name) {
  const Alert& a = n.alert;
  const std::string line = NoticeLine(n);
  std::string facts_text;
  for (const auto& [k, v] : a.details) {
    if (!v.empty()) facts_text += "\n" + k + ": " + v;
  }
  const std::string footer = "\n(" + probe_name + "; ack: mailpulse-probe ack " + a.id + ")";
  switch (kind) {
    case NotifierKind::kSlack:
    case NotifierKind::kMattermost:
      return json{{"text", line + facts_text + footer}}.dump();
    case NotifierKind::kDiscord: {
      std::string content = line + facts_text + footer;
      if (content.size() > 2000) content.resize(2000);  // Discord's limit for `content`
      return json{{"content", content}}.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    case NotifierKind::kTeams: {
      json facts = json::array();
      for (const auto& [k, v] : a.details) {
        if (!v.empty()) facts.push_back({{"title", k}, {"value", v}});
      }
      json body = json::array({{{"type", "TextBlock"},
                                {"text", NoticeStatusText(n) + ": " + a.rule + " " + a.subject},
                                {"weight", "Bolder"},
                                {"size", "Medium"},
                                {"wrap", true}},
                               {{"type", "TextBlock"}, {"text", a.summary}, {"wrap", true}},
                               {{"type", "FactSet"}, {"facts", facts}},
                               {{"type", "TextBlock"},
                                {"text", footer.substr(1)},
                                {"isSubtle", true},
                                {"wrap", true}}});
      return json{
          {"type", "message"},
          {"attachments",
           json::array({{{"contentType", "application/vnd.microsoft.card.adaptive"},
                         {"contentUrl", nullptr},
                         {"content",
                          {{"$schema", "http://adaptivecards.io/schemas/adaptive-card.json"},
                           {"type", "AdaptiveCard"},
                           {"version", "1.4"},
                           {"body", body}}}}})}}
          .dump();
    }
    default:
      return NoticeJson(n, probe_name);
  }
}

std::vector<std::pair<std::string, std::string>> NoticeEnvironment(const Notice& n,
                                                                   const std::string& probe_name) {
  const Alert& a = n.alert;
  return {{"MAILPULSE_ALERT_STATUS", StatusWord(n)},
          {"MAILPULSE_ALERT_KIND", NoticeKindName(n.kind)},
          {"MAILPULSE_ALERT_ID", a.id},
          {"MAILPULSE_ALERT_RULE", a.rule},
          {"MAILPULSE_ALERT_SUBJECT", a.subject},
          {"MAILPULSE_ALERT_SEVERITY", a.severity},
          {"MAILPULSE_ALERT_SUMMARY", a.summary},
          {"MAILPULSE_ALERT_PROBE", probe_name},
          {"MAILPULSE_ALERT_TIME", Iso(n.at)}};
}

std::string NoticeEmail(const Notice& n, const std::string& probe_name, const std::string& from,
                        const std::vector<std::string>& to, std::int64_t now_unix) {
  const Alert& a = n.alert;
  char date[64] = "";
  const auto t = static_cast<std::time_t>(now_unix);
  std::tm tm{};
  if (gmtime_r(&t, &tm) != nullptr) {
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);  // RFC 5322 3.3
  }
  std::string rcpts;
  for (const std::string& r : to) rcpts += (rcpts.empty() ? "<" : ", <") + r + ">";
  std::string m = "Date: " + std::string(date) + "\n";
  m += "From: mailpulse <" + from + ">\n";
  m += "To: " + rcpts + "\n";
  m += "Subject: " +
       HeaderText("[mailpulse] " + NoticeStatusText(n) + " " + a.rule + " " + a.subject) + "\n";
  m += "Auto-Submitted: auto-generated\n";  // RFC 3834: no vacation replies to alerts
  m += "X-Mailpulse-Alert: " + HeaderText(a.id) + "\n";
  m += "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n";
  m += "Content-Transfer-Encoding: 8bit\n\n";
  m += NoticeLine(n) + "\n\n";
  for (const auto& [k, v] : a.details) {
    if (!v.empty()) m += k + ": " + v + "\n";
  }
  m += "\nsince: " + Iso(a.since) + "\nfired: " + Iso(a.fired_at) + "\nprobe: " + probe_name + "\n";
  if (n.kind != NoticeKind::kResolved) m += "\nAcknowledge: mailpulse-probe ack " + a.id + "\n";
  return m;
}

}  // namespace mailpulse
