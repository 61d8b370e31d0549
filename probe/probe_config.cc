#include "probe/probe_config.h"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <map>

#include "probe/resolver.h"
#include "shared/logging.h"
#include "shared/secret_file.h"

namespace mailpulse {
namespace {

constexpr std::size_t kMaxTargetNameLength = 64;
constexpr std::int64_t kMaxConcurrentChecks = 100000;

std::string HostName() {
  char name[256] = "";
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Target names become label values and log words: a tight alphabet keeps both clean.
Status CheckTargetName(const std::string& name) {
  if (name.empty()) return Status::Error("is empty");
  if (name.size() > kMaxTargetNameLength) return Status::Error("is longer than 64 characters");
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == ':')) {
      return Status::Error("'" + OneLine(name) +
                           "' may hold only letters, digits and . _ - : characters");
    }
  }
  return Status::Ok();
}

StatusOr<AddressFamily> ParseFamily(const std::string& text) {
  if (text == "any") return AddressFamily::kAny;
  if (text == "ipv4") return AddressFamily::kIpv4;
  if (text == "ipv6") return AddressFamily::kIpv6;
  return Status::Error("expected any, ipv4 or ipv6, got '" + OneLine(text) + "'");
}

// An error about `key` of `entry`, at the line that set it (or the [[target]] header).
Status EntryError(const ConfigEntry& entry, const std::string& key, const std::string& message) {
  return Status::Error(entry.Where(key) + ": target." + key + ": " + message);
}

StatusOr<TargetSpec> SpecFromEntry(const ConfigEntry& e) {
  TargetSpec spec;
  spec.host = e.GetString("host");
  spec.mx = e.GetBool("mx");
  const std::int64_t port = e.GetInt("port");
  if (port < 0 || port > 65535) return EntryError(e, "port", "must be 0 to 65535");
  spec.port = static_cast<std::uint16_t>(port);
  spec.tls = e.GetString("tls");
  spec.tls_name = e.GetString("tls_name");
  spec.verify = e.GetBool("verify");
  spec.ca_file = e.GetString("ca_file");
  StatusOr<AddressFamily> family = ParseFamily(e.GetString("family"));
  if (!family.ok()) return EntryError(e, "family", family.status().message());
  spec.family = *family;
  spec.helo = e.GetString("helo");
  spec.auth_user = e.GetString("auth_user");
  spec.auth_password_file = e.GetString("auth_password_file");
  spec.send = e.GetBool("send");
  spec.from = e.GetString("from");
  spec.to = e.GetStringList("to");
  spec.timeout_seconds = e.GetSeconds("timeout");
  spec.phase_timeout_seconds = e.GetSeconds("phase_timeout");
  if (const double warn = e.GetSeconds("warn"); warn > 0) spec.thresholds.warn_seconds = warn;
  if (const double crit = e.GetSeconds("crit"); crit > 0) spec.thresholds.crit_seconds = crit;
  for (const char* key : {"cert_warn_days", "cert_crit_days"}) {
    const std::int64_t days = e.GetInt(key);
    if (days < -1 || days > 100000) return EntryError(e, key, "must be -1 (off) to 100000");
    if (days < 0) continue;
    (std::string_view(key) == "cert_warn_days" ? spec.thresholds.cert_warn_days
                                               : spec.thresholds.cert_crit_days) =
        static_cast<int>(days);
  }
  return spec;
}

StatusOr<ImapTlsMode> ParseImapTls(const std::string& text) {
  if (text == "implicit") return ImapTlsMode::kImplicit;
  if (text == "starttls") return ImapTlsMode::kStartTls;
  return Status::Error("expected implicit or starttls, got '" + OneLine(text) + "'");
}

// The IMAP confirmation of a roundtrip target, when imap_host is set.
Status ImapFromEntry(const ConfigEntry& e, ProbeTarget* target) {
  const std::string& host = e.GetString("imap_host");
  if (host.empty()) return Status::Ok();
  if (!target->roundtrip) return EntryError(e, "imap_host", "needs roundtrip = true");
  ImapConfirmation c;
  c.options.host = host;
  const std::int64_t port = e.GetInt("imap_port");
  if (port < 1 || port > 65535) return EntryError(e, "imap_port", "must be 1 to 65535");
  c.options.port = static_cast<std::uint16_t>(port);
  StatusOr<ImapTlsMode> tls = ParseImapTls(e.GetString("imap_tls"));
  if (!tls.ok()) return EntryError(e, "imap_tls", tls.status().message());
  c.options.tls = *tls;
  c.options.verify_certificate = e.GetBool("imap_verify");
  c.options.tls_name = e.GetString("imap_tls_name");
  c.options.user = e.GetString("imap_user");
  if (c.options.user.empty()) return EntryError(e, "imap_user", "IMAP needs a login");
  StatusOr<std::string> password = ReadPasswordFile(e.GetString("imap_password_file"));
  if (!password.ok()) return EntryError(e, "imap_password_file", password.status().message());
  c.options.password = std::move(*password);
  c.options.mailbox = e.GetString("imap_mailbox");
  c.ca_file = e.GetString("imap_ca_file");
  c.poll_seconds = e.GetSeconds("imap_poll");
  if (c.poll_seconds < 0.1) return EntryError(e, "imap_poll", "must be at least 100ms");
  target->imap = std::move(c);
  return Status::Ok();
}

StatusOr<ProbeTarget> TargetFromEntry(const ConfigEntry& e) {
  ProbeTarget target;
  target.name = e.GetString("name");
  target.where = e.where();
  if (Status s = CheckTargetName(target.name); !s.ok()) return EntryError(e, "name", s.message());
  target.interval_seconds = e.GetSeconds("interval");
  if (target.interval_seconds < 0.001) {
    return EntryError(e, "interval", "must be at least 1ms");
  }
  target.tls_resume_seconds = e.GetSeconds("tls_resume");
  StatusOr<TargetSpec> spec = SpecFromEntry(e);
  if (!spec.ok()) return spec.status();
  std::string field;
  StatusOr<CheckPlan> plan = PlanCheck(*spec, &field);
  if (!plan.ok()) {
    if (field.empty()) return Status::Error(e.where() + ": " + plan.status().message());
    return EntryError(e, field, plan.status().message());
  }
  target.plan = std::move(*plan);
  target.roundtrip = e.GetBool("roundtrip");
  if (target.roundtrip && target.plan.options.session.kind != CheckKind::kSend) {
    return EntryError(e, "roundtrip", "needs send = true (the probe message is what travels)");
  }
  if (Status st = ImapFromEntry(e, &target); !st.ok()) return st;
  return target;
}

// `key` holds an optional endpoint; empty means none.
Status OptionalEndpoint(const Config& config, const std::string& key,
                        std::optional<Endpoint>* out) {
  const std::string& text = config.GetString(key);
  if (text.empty()) return Status::Ok();
  StatusOr<Endpoint> e = ParseEndpoint(text);
  if (!e.ok()) return Status::Error(config.Where(key) + ": " + key + ": " + e.status().message());
  *out = *e;
  return Status::Ok();
}

Status KeyError(const Config& config, const std::string& key, const std::string& message) {
  return Status::Error(config.Where(key) + ": " + key + ": " + message);
}

// The TLS event socket and the token both it and a tls: report_to need.
Status LoadEventTls(const Config& config, ProbeSettings* s) {
  if (Status st = OptionalEndpoint(config, "probe.event_listen_tls", &s->event_listen_tls);
      !st.ok()) {
    return st;
  }
  if (s->event_listen_tls) {
    if (s->event_listen_tls->kind != Endpoint::Kind::kTcp) {
      return KeyError(config, "probe.event_listen_tls", "must be HOST:PORT");
    }
    s->event_listen_tls->tls = true;
    s->event_tls_cert_file = config.GetString("probe.event_tls_cert_file");
    s->event_tls_key_file = config.GetString("probe.event_tls_key_file");
    if (s->event_tls_cert_file.empty() || s->event_tls_key_file.empty()) {
      return KeyError(config, "probe.event_listen_tls",
                      "needs probe.event_tls_cert_file and probe.event_tls_key_file");
    }
    if (Status st = CheckPrivateFile(s->event_tls_key_file, "key file"); !st.ok()) {
      return KeyError(config, "probe.event_tls_key_file", st.message());
    }
  }
  if (s->event_socket && s->event_socket->tls) {
    return KeyError(config, "probe.event_socket", "use probe.event_listen_tls for TLS");
  }
  const bool needs_token = s->event_listen_tls || (s->report_to && s->report_to->tls);
  const std::string& token_file = config.GetString("probe.event_token_file");
  if (needs_token && token_file.empty()) {
    return KeyError(config, "probe.event_token_file",
                    "a TLS event socket or a tls: probe.report_to needs the shared token");
  }
  if (!token_file.empty()) {
    StatusOr<std::string> token = ReadSecretFile(token_file, "token file");
    if (!token.ok()) return KeyError(config, "probe.event_token_file", token.status().message());
    s->event_token = std::move(*token);
  }
  s->event_ca_file = config.GetString("probe.event_ca_file");
  return Status::Ok();
}

Status LoadProbeSection(const Config& config, ProbeSettings* s) {
  s->name = config.GetString("probe.name");
  if (s->name.empty()) s->name = HostName();
  s->user = config.GetString("probe.user");
  s->event_socket_group = config.GetString("probe.event_socket_group");
  for (const auto& [key, slot] : {std::pair<const char*, std::optional<Endpoint>*>{
                                      "probe.metrics_listen", &s->metrics_listen},
                                  {"probe.event_socket", &s->event_socket},
                                  {"probe.report_to", &s->report_to}}) {
    if (Status st = OptionalEndpoint(config, key, slot); !st.ok()) return st;
  }
  if (Status st = LoadEventTls(config, s); !st.ok()) return st;
  if (s->metrics_listen && s->metrics_listen->kind != Endpoint::Kind::kTcp) {
    return Status::Error(config.Where("probe.metrics_listen") +
                         ": probe.metrics_listen: must be HOST:PORT");
  }
  s->resolvers = config.GetStringList("probe.resolvers");
  for (const std::string& r : s->resolvers) {
    if (StatusOr<SocketAddress> a = ParseNameserver(r); !a.ok()) {
      return Status::Error(config.Where("probe.resolvers") +
                           ": probe.resolvers: " + a.status().message());
    }
  }
  const std::int64_t max = config.GetInt("probe.max_concurrent_checks");
  if (max < 1 || max > kMaxConcurrentChecks) {
    return Status::Error(config.Where("probe.max_concurrent_checks") +
                         ": probe.max_concurrent_checks: must be 1 to 100000");
  }
  s->max_concurrent_checks = static_cast<std::size_t>(max);
  if (const std::string& key_file = config.GetString("probe.key_file"); !key_file.empty()) {
    StatusOr<ProbeKey> key = ProbeKey::Load(key_file);
    if (!key.ok()) return KeyError(config, "probe.key_file", key.status().message());
    s->key = std::move(*key);
  }
  s->roundtrip_deadline_seconds = config.GetSeconds("probe.roundtrip_deadline");
  if (s->roundtrip_deadline_seconds < 1) {
    return KeyError(config, "probe.roundtrip_deadline", "must be at least 1s");
  }
  const std::int64_t jitter = config.GetInt("probe.jitter_percent");
  if (jitter < 0 || jitter > 50) {
    return Status::Error(config.Where("probe.jitter_percent") +
                         ": probe.jitter_percent: must be 0 to 50");
  }
  s->jitter_fraction = static_cast<double>(jitter) / 100;
  s->log_target = config.GetString("log.target");
  s->log_level = config.GetString("log.level");
  for (const char* key : {"log.target", "log.level"}) {
    const Status st = std::string_view(key) == "log.target" ? ParseLogTarget(s->log_target).status()
                                                            : ParseLogLevel(s->log_level).status();
    if (!st.ok()) return Status::Error(config.Where(key) + ": " + key + ": " + st.message());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ProbeSettings> LoadProbeSettings(const Config& config) {
  ProbeSettings settings;
  if (Status s = LoadProbeSection(config, &settings); !s.ok()) return s;
  std::map<std::string, std::string> seen;  // name -> where
  for (const ConfigEntry& entry : config.Entries("target")) {
    StatusOr<ProbeTarget> target = TargetFromEntry(entry);
    if (!target.ok()) return target.status();
    auto [it, inserted] = seen.emplace(target->name, target->where);
    if (!inserted) {
      return EntryError(
          entry, "name",
          "'" + target->name + "' is already the name of the target at " + it->second);
    }
    if (target->roundtrip && !settings.key) {
      return EntryError(entry, "roundtrip", "needs probe.key_file (the key the milters share)");
    }
    settings.targets.push_back(std::move(*target));
  }
  StatusOr<AlertSettings> alerts = LoadAlertSettings(config);
  if (!alerts.ok()) return alerts.status();
  settings.alerts = std::move(*alerts);
  settings.alert_state_file = config.GetString("probe.alert_state_file");
  return settings;
}

std::vector<std::string> SettingsNeedingRestart(const ProbeSettings& a, const ProbeSettings& b) {
  std::vector<std::string> keys;
  const auto differ = [](const std::optional<Endpoint>& x, const std::optional<Endpoint>& y) {
    return x.has_value() != y.has_value() || (x && x->ToString() != y->ToString());
  };
  if (a.name != b.name) keys.emplace_back("probe.name");
  if (a.user != b.user) keys.emplace_back("probe.user");
  if (differ(a.metrics_listen, b.metrics_listen)) keys.emplace_back("probe.metrics_listen");
  if (differ(a.event_socket, b.event_socket)) keys.emplace_back("probe.event_socket");
  if (a.event_socket_group != b.event_socket_group) {
    keys.emplace_back("probe.event_socket_group");
  }
  if (differ(a.report_to, b.report_to)) keys.emplace_back("probe.report_to");
  if (differ(a.event_listen_tls, b.event_listen_tls) ||
      a.event_tls_cert_file != b.event_tls_cert_file ||
      a.event_tls_key_file != b.event_tls_key_file || a.event_token != b.event_token ||
      a.event_ca_file != b.event_ca_file) {
    keys.emplace_back("probe.event_listen_tls/event_tls_*/event_token_file/event_ca_file");
  }
  if (a.resolvers != b.resolvers) keys.emplace_back("probe.resolvers");
  if (a.roundtrip_deadline_seconds != b.roundtrip_deadline_seconds) {
    keys.emplace_back("probe.roundtrip_deadline");
  }
  if (a.alert_state_file != b.alert_state_file) keys.emplace_back("probe.alert_state_file");
  if (a.log_target != b.log_target) keys.emplace_back("log.target");
  if (a.log_level != b.log_level) keys.emplace_back("log.level");
  return keys;
}

}  // namespace mailpulse
