// The [[alert]] and [[notifier]] sections of the probe's config, checked and turned into the
// engine's rules, the conditions that feed them, and the notifiers' settings. Every error names
// the FILE:LINE of the value ("mailpulse.toml:40: alert.notify: no [[notifier]] named 'pager'").
// Reads the secret files notifiers name (URLs, passwords); otherwise pure. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "probe/alerts/alert_engine.h"
#include "shared/config.h"
#include "shared/status.h"

namespace mailpulse {

enum class AlertSignal {
  kCheckFailing,
  kLatency,
  kCertificateExpiry,
  kRoundtripLost,
  kRoundtripBounced,
  kHopLatency,
  kQueueMessages,
  kQueueAge,
  kOutboundSpike,
  kMilterSilent,
};

const char* AlertSignalName(AlertSignal s);  // as written in `when`

// What makes a rule's subject bad.
struct AlertCondition {
  AlertSignal signal = AlertSignal::kCheckFailing;
  std::string match = "*";  // glob on the subject
  int checks = 3;
  std::string phase = "total";
  double over_seconds = 0;
  std::int64_t days = 14;
  std::int64_t messages = 100;
  std::string queue = "deferred";
};

struct AlertRuleSpec {
  AlertRule rule;
  AlertCondition condition;
};

enum class NotifierKind { kWebhook, kSlack, kMattermost, kDiscord, kTeams, kCommand, kEmail };

const char* NotifierKindName(NotifierKind k);

struct NotifierSpec {
  std::string name;
  NotifierKind kind = NotifierKind::kWebhook;
  std::string url;  // a secret: never logged (RedactedUrl for logs)
  std::string ca_file;
  bool verify = true;
  std::vector<std::string> command;
  std::vector<std::string> to;
  std::string from;
  std::string server_host;
  int server_port = 587;
  std::string tls = "starttls";
  std::string auth_user;
  std::string auth_password;  // a secret
  double timeout_seconds = 10;
  int retries = 5;
  double retry_backoff_seconds = 2;
};

struct AlertSettings {
  std::vector<AlertRuleSpec> rules;
  std::vector<NotifierSpec> notifiers;
};

StatusOr<AlertSettings> LoadAlertSettings(const Config& config);

// "https://hooks.slack.com/…": scheme and host only, for logs.
std::string RedactedUrl(const std::string& url);

}  // namespace mailpulse
