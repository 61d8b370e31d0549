#include "probe/alerts/alert_config.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <utility>

#include "probe/smtp/smtp_session.h"
#include "shared/config_text.h"
#include "shared/secret_file.h"

namespace mailpulse {
namespace {

using config_text::ClosestName;
using config_text::ParseDurationText;
using config_text::Trim;

constexpr std::pair<AlertSignal, const char*> kSignals[] = {
    {AlertSignal::kCheckFailing, "check_failing"},
    {AlertSignal::kLatency, "latency"},
    {AlertSignal::kCertificateExpiry, "certificate_expiry"},
    {AlertSignal::kRoundtripLost, "roundtrip_lost"},
    {AlertSignal::kRoundtripBounced, "roundtrip_bounced"},
    {AlertSignal::kHopLatency, "hop_latency"},
    {AlertSignal::kQueueMessages, "queue_messages"},
    {AlertSignal::kQueueAge, "queue_age"},
    {AlertSignal::kOutboundSpike, "outbound_spike"},
    {AlertSignal::kMilterSilent, "milter_silent"},
};

constexpr std::pair<NotifierKind, const char*> kKinds[] = {
    {NotifierKind::kWebhook, "webhook"},       {NotifierKind::kSlack, "slack"},
    {NotifierKind::kMattermost, "mattermost"}, {NotifierKind::kDiscord, "discord"},
    {NotifierKind::kTeams, "teams"},           {NotifierKind::kCommand, "command"},
    {NotifierKind::kEmail, "email"},
};

constexpr const char* kQueues[] = {"maildrop", "incoming", "active",
                                   "deferred", "hold",     "sendmail"};

// "FILE:LINE: SECTION.KEY: message".
Status Fail(const ConfigEntry& e, std::string_view section, std::string_view key,
            const std::string& message) {
  return Status::Error(e.Where(key) + ": " + std::string(section) + "." + std::string(key) + ": " +
                       message);
}

bool ValidName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool ValidPhase(const std::string& phase) {
  if (phase == "total") return true;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (PhaseName(static_cast<Phase>(i)) == phase) return true;
  }
  return false;
}

// "15m lead,manager" -> a tier.
StatusOr<AlertTier> ParseTier(std::string_view text) {
  text = Trim(text);
  const std::size_t space = text.find_first_of(" \t");
  if (space == std::string_view::npos) {
    return Status::Error("expected \"DELAY NOTIFIER[,NOTIFIER...]\", got '" + std::string(text) +
                         "'");
  }
  StatusOr<double> delay = ParseDurationText(text.substr(0, space));
  if (!delay.ok()) return delay.status();
  if (*delay <= 0) return Status::Error("an escalation delay must be positive");
  AlertTier tier{*delay, {}};
  std::string_view names = Trim(text.substr(space));
  while (!names.empty()) {
    const std::size_t comma = names.find(',');
    const std::string_view name = Trim(names.substr(0, comma));
    if (!name.empty()) tier.notifiers.emplace_back(name);
    if (comma == std::string_view::npos) break;
    names.remove_prefix(comma + 1);
  }
  if (tier.notifiers.empty()) return Status::Error("an escalation tier needs a notifier");
  return tier;
}

StatusOr<NotifierSpec> LoadNotifier(const ConfigEntry& e) {
  const auto fail = [&](std::string_view key, const std::string& m) {
    return Fail(e, "notifier", key, m);
  };
  NotifierSpec n;
  n.name = e.GetString("name");
  if (!ValidName(n.name)) return fail("name", "letters, digits and . _ - only");
  const std::string& type = e.GetString("type");
  bool known = false;
  for (const auto& [kind, name] : kKinds) {
    if (type == name) n.kind = kind, known = true;
  }
  if (!known) {
    return fail("type",
                "expected webhook, slack, mattermost, discord, teams, command or email, got '" +
                    type + "'");
  }
  n.ca_file = e.GetString("ca_file");
  n.verify = e.GetBool("verify");
  n.timeout_seconds = e.GetSeconds("timeout");
  if (n.timeout_seconds <= 0) return fail("timeout", "must be positive");
  const std::int64_t retries = e.GetInt("retries");
  if (retries < 0 || retries > 100) return fail("retries", "expected 0 to 100");
  n.retries = static_cast<int>(retries);
  n.retry_backoff_seconds = e.GetSeconds("retry_backoff");
  if (n.retry_backoff_seconds <= 0) return fail("retry_backoff", "must be positive");
  switch (n.kind) {
    case NotifierKind::kCommand:
      n.command = e.GetStringList("command");
      if (n.command.empty() || n.command[0].empty() || n.command[0].front() != '/') {
        return fail("command", "needs the program's absolute path first");
      }
      break;
    case NotifierKind::kEmail: {
      n.to = e.GetStringList("to");
      if (n.to.empty()) return fail("to", "an email notifier needs recipients");
      n.from = e.GetString("from");
      std::string server = e.GetString("server");
      if (server.empty()) return fail("server", "an email notifier needs a server");
      if (const std::size_t colon = server.rfind(':');
          colon != std::string::npos && server.find(':') == colon) {
        const std::string port = server.substr(colon + 1);
        char* end = nullptr;
        const long p = std::strtol(port.c_str(), &end, 10);
        if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
          return fail("server", "bad port '" + port + "'");
        }
        n.server_port = static_cast<int>(p);
        server.resize(colon);
      }
      n.server_host = server;
      n.tls = e.GetString("tls");
      if (n.tls != "none" && n.tls != "starttls" && n.tls != "implicit") {
        return fail("tls", "expected none, starttls or implicit, got '" + n.tls + "'");
      }
      n.auth_user = e.GetString("auth_user");
      if (!n.auth_user.empty()) {
        StatusOr<std::string> pw =
            ReadSecretFile(e.GetString("auth_password_file"), "password file");
        if (!pw.ok()) return fail("auth_password_file", pw.status().message());
        n.auth_password = std::move(*pw);
      }
      break;
    }
    default: {
      StatusOr<std::string> url = ReadSecretFile(e.GetString("url_file"), "URL file");
      if (!url.ok()) return fail("url_file", url.status().message());
      if (url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0) {
        return fail("url_file", "the URL must start with http:// or https://");
      }
      n.url = std::move(*url);
    }
  }
  return n;
}

StatusOr<AlertRuleSpec> LoadRule(const ConfigEntry& e, const std::set<std::string>& notifiers) {
  const auto fail = [&](std::string_view key, const std::string& m) {
    return Fail(e, "alert", key, m);
  };
  AlertRuleSpec spec;
  AlertRule& r = spec.rule;
  AlertCondition& c = spec.condition;
  r.name = e.GetString("name");
  if (!ValidName(r.name)) return fail("name", "letters, digits and . _ - only");
  const std::string& when = e.GetString("when");
  bool known = false;
  for (const auto& [signal, name] : kSignals) {
    if (when == name) c.signal = signal, known = true;
  }
  if (!known) {
    std::vector<std::string_view> names;
    for (const auto& [signal, name] : kSignals) names.emplace_back(name);
    return fail("when", "unknown signal '" + when + "'; did you mean " +
                            std::string(ClosestName(when, names)) + "?");
  }
  c.match = e.GetString("match");
  const std::int64_t checks = e.GetInt("checks");
  if (checks < 1 || checks > 1000) return fail("checks", "expected 1 to 1000");
  c.checks = static_cast<int>(checks);
  c.phase = e.GetString("phase");
  if (!ValidPhase(c.phase)) return fail("phase", "unknown phase '" + c.phase + "'");
  c.over_seconds = e.GetSeconds("over");
  const bool needs_over = c.signal == AlertSignal::kLatency ||
                          c.signal == AlertSignal::kHopLatency ||
                          c.signal == AlertSignal::kQueueAge;
  if (needs_over && c.over_seconds <= 0) return fail("over", "this signal needs a threshold");
  if (c.signal == AlertSignal::kMilterSilent && c.over_seconds <= 0) c.over_seconds = 30;
  c.days = e.GetInt("days");
  c.messages = e.GetInt("messages");
  if (c.messages < 0) return fail("messages", "must not be negative");
  c.queue = e.GetString("queue");
  if (std::find(std::begin(kQueues), std::end(kQueues), c.queue) == std::end(kQueues)) {
    return fail("queue", "unknown queue '" + c.queue + "'");
  }
  r.for_seconds = e.GetSeconds("for");
  r.clear_seconds = e.GetSeconds("clear");
  r.repeat_seconds = e.GetSeconds("repeat");
  const std::int64_t flaps = e.GetInt("flap_changes");
  if (flaps < 0 || (flaps > 0 && flaps < 2)) return fail("flap_changes", "0 (off) or at least 2");
  r.flap_changes = static_cast<int>(flaps);
  r.flap_window_seconds = e.GetSeconds("flap_window");
  r.severity = e.GetString("severity");
  if (r.severity != "warning" && r.severity != "critical") {
    return fail("severity", "expected warning or critical, got '" + r.severity + "'");
  }
  AlertTier first{0, e.GetStringList("notify")};
  if (first.notifiers.empty()) return fail("notify", "name at least one [[notifier]]");
  r.tiers.push_back(std::move(first));
  for (const std::string& text : e.GetStringList("escalate")) {
    StatusOr<AlertTier> tier = ParseTier(text);
    if (!tier.ok()) return fail("escalate", tier.status().message());
    if (tier->after_seconds <= r.tiers.back().after_seconds) {
      return fail("escalate", "tiers must come in increasing delay");
    }
    r.tiers.push_back(std::move(*tier));
  }
  for (const AlertTier& tier : r.tiers) {
    for (const std::string& n : tier.notifiers) {
      if (!notifiers.contains(n)) {
        return fail(&tier == &r.tiers.front() ? "notify" : "escalate",
                    "no [[notifier]] named '" + n + "'");
      }
    }
  }
  return spec;
}

}  // namespace

const char* AlertSignalName(AlertSignal s) {
  for (const auto& [signal, name] : kSignals) {
    if (signal == s) return name;
  }
  return "unknown";
}

const char* NotifierKindName(NotifierKind k) {
  for (const auto& [kind, name] : kKinds) {
    if (kind == k) return name;
  }
  return "unknown";
}

StatusOr<AlertSettings> LoadAlertSettings(const Config& config) {
  AlertSettings out;
  std::set<std::string> names;
  for (const ConfigEntry& e : config.Entries("notifier")) {
    StatusOr<NotifierSpec> n = LoadNotifier(e);
    if (!n.ok()) return n.status();
    if (!names.insert(n->name).second) {
      return Fail(e, "notifier", "name", "a second notifier named '" + n->name + "'");
    }
    out.notifiers.push_back(std::move(*n));
  }
  std::set<std::string> rules;
  for (const ConfigEntry& e : config.Entries("alert")) {
    StatusOr<AlertRuleSpec> r = LoadRule(e, names);
    if (!r.ok()) return r.status();
    if (!rules.insert(r->rule.name).second) {
      return Fail(e, "alert", "name", "a second rule named '" + r->rule.name + "'");
    }
    out.rules.push_back(std::move(*r));
  }
  return out;
}

std::string RedactedUrl(const std::string& url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "(url)";
  const std::size_t host_end = url.find_first_of("/?#", scheme + 3);
  std::string host = url.substr(
      scheme + 3, host_end == std::string::npos ? std::string::npos : host_end - scheme - 3);
  if (const std::size_t at = host.rfind('@'); at != std::string::npos) host.erase(0, at + 1);
  return url.substr(0, scheme + 3) + host + (host_end == std::string::npos ? "" : "/…");
}

}  // namespace mailpulse
