// The scheduling daemon's settings, made from a Config ([probe] keys and [[target]]
// sections) and validated in one place, so `mailpulse-probe run --check-config`, start-up and
// a SIGHUP reload agree. Every error names where the value came from ("FILE:LINE: target.tls:
// expected none, starttls or implicit, got 'tsl'"). Reads the targets' password files (through
// PlanCheck); otherwise pure. Thread-compatible.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "probe/alerts/alert_config.h"
#include "probe/check_plan.h"
#include "probe/imap_confirmer.h"
#include "shared/config.h"
#include "shared/endpoint.h"
#include "shared/probe_token.h"
#include "shared/status.h"

namespace mailpulse {

// IMAP confirmation of a roundtrip target's deliveries (probe/imap_confirmer.h).
struct ImapConfirmation {
  ImapOptions options;  // without probe_id: set per message
  std::string ca_file;
  double poll_seconds = 5;
};

struct ProbeTarget {
  std::string name;
  CheckPlan plan;
  double interval_seconds = 60;
  double tls_resume_seconds = 0;  // 0: a full handshake every check
  bool roundtrip = false;         // its send check's message is a signed probe, followed
  std::optional<ImapConfirmation> imap;
  std::string where;  // "FILE:LINE" of its [[target]] header
};

struct ProbeSettings {
  std::string name;  // probe.name, or the host name
  std::string user;
  std::optional<Endpoint> metrics_listen;
  std::optional<Endpoint> event_socket;
  std::string event_socket_group;
  std::optional<Endpoint> report_to;
  std::optional<Endpoint> event_listen_tls;  // tls set
  std::string event_tls_cert_file;
  std::string event_tls_key_file;
  std::string event_token;  // read from probe.event_token_file; never logged
  std::string event_ca_file;
  std::vector<std::string> resolvers;  // nameservers; empty: /etc/resolv.conf
  std::optional<ProbeKey> key;         // probe.key_file, for roundtrip targets
  double roundtrip_deadline_seconds = 600;
  std::size_t max_concurrent_checks = 64;
  double jitter_fraction = 0.1;
  std::vector<ProbeTarget> targets;
  AlertSettings alerts;          // [[alert]] and [[notifier]]: reloadable
  std::string alert_state_file;  // probe.alert_state_file
  std::string log_target;
  std::string log_level;
};

StatusOr<ProbeSettings> LoadProbeSettings(const Config& config);

// The [probe] and [log] settings a reload cannot change (sockets, user, name, logging) that
// differ between `running` and `loaded`, as key names ("probe.metrics_listen").
std::vector<std::string> SettingsNeedingRestart(const ProbeSettings& running,
                                                const ProbeSettings& loaded);

}  // namespace mailpulse
