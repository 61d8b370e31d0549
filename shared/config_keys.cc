// The one table of configuration keys for both programs. Adding a key here adds it to the
// parser, --check-config, --dump-config and docs/config.md.
// Keys marked reloadable take effect on SIGHUP (mailpulse-probe); the others need a restart.
#include "shared/config.h"

namespace mailpulse {

const std::vector<ConfigKey>& ConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"log.target", ConfigType::kString, R"("syslog")", false,
       "Where logs go: \"syslog\" (mail facility) or \"stderr\". --foreground forces stderr."},
      {"log.level", ConfigType::kString, R"("info")", false,
       "Lowest level logged: debug, info, warning or error."},

      {"milter.socket", ConfigType::kString, R"("unix:/run/mailpulse/milter.sock")", false,
       "Where the milter listens, in libmilter syntax: unix:/path or inet:PORT@HOST "
       "(inet6:PORT@HOST). Postfix names the same socket unix:/path or inet:HOST:PORT."},
      {"milter.socket_group", ConfigType::kString, R"("postfix")", false,
       "Group that owns the unix socket (mode 0660), so the MTA can connect. Empty: the "
       "group of milter.user."},
      {"milter.user", ConfigType::kString, R"("mailpulse")", false,
       "When started as root, switch to this user (and its group) after binding sockets."},
      {"milter.metrics_listen", ConfigType::kString, R"("127.0.0.1:9797")", false,
       "ADDRESS:PORT for the HTTP /metrics endpoint ([::1]:PORT for IPv6). Empty disables it."},
      {"milter.trusted_networks", ConfigType::kStringList, R"(["127.0.0.0/8", "::1/128"])", false,
       "Client networks (CIDR) whose mail counts as outbound, like Postfix's mynetworks. "
       "SASL-authenticated clients are outbound from anywhere."},
      {"milter.hop_name", ConfigType::kString, R"("")", false,
       "Name of this hop in events and stamps. Empty: the host name."},
      {"milter.event_socket", ConfigType::kString, R"("")", false,
       "The probe's shared event socket: unix:/path, HOST:PORT, or tls:HOST:PORT for a probe on "
       "another host (with milter.event_token_file). Empty: send no events."},
      {"milter.event_token_file", ConfigType::kString, R"("")", false,
       "For a tls:HOST:PORT event socket: the file holding the probe's shared event token "
       "(one line, not readable by group or others)."},
      {"milter.event_ca_file", ConfigType::kString, R"("")", false,
       "For a tls: event socket: PEM CA certificates to verify the probe's certificate with. "
       "Empty: the system store."},
      {"milter.event_tls_name", ConfigType::kString, R"("")", false,
       "For a tls: event socket: the name the probe's certificate must carry. Empty: its host."},
      {"milter.probe_key_file", ConfigType::kString, R"("")", false,
       "The probe key shared with mailpulse-probe (mailpulse-probe keygen; mode 0600): with it "
       "the milter recognises signed probe messages, stamps and reports them. Empty: off."},
      {"milter.probe_max_age", ConfigType::kDuration, R"("1h")", false,
       "A probe token older than this is stale: counted as invalid, not a probe."},
      {"milter.probe_max_clock_skew", ConfigType::kDuration, R"("5m")", false,
       "How far in the future a probe token may be (the probe's clock ahead of ours)."},
      {"milter.probe_sinks", ConfigType::kStringList, "[]", false,
       "Addresses where probe messages end: a probe to only these is reported delivered."},
      {"milter.probe_discard", ConfigType::kBool, "false", false,
       "Discard probe messages to the sink addresses after reporting them, so they never fill "
       "a mailbox."},
      {"milter.probe_return_paths", ConfigType::kStringList, "[]", false,
       "The probes' envelope senders: DSNs to these are read for bounced probes. Empty: DSNs "
       "to any recipient are read (they are rare; only their body is kept, at most 256 KiB)."},
      {"milter.probe_strip_invalid", ConfigType::kBool, "false", false,
       "Remove X-Mailpulse-Probe headers that do not verify (forged, stale, replayed)."},
      {"milter.spike_detection", ConfigType::kBool, "true", false,
       "Watch outbound mail (authenticated or from trusted_networks) for spikes per key and in "
       "total (docs/spikes.md)."},
      {"milter.spike_keys", ConfigType::kStringList,
       R"(["sasl_login", "client_ip", "sender_domain"])", false,
       "The keys outbound rates are kept for: sasl_login, client_ip, sender_domain."},
      {"milter.spike_short_window", ConfigType::kDuration, R"("10s")", false,
       "Time constant of the short-window rate a spike is judged on."},
      {"milter.spike_baseline_window", ConfigType::kDuration, R"("1h")", false,
       "Time constant of the baseline: what a key normally sends."},
      {"milter.spike_learning", ConfigType::kDuration, R"("5m")", false,
       "No spike starts this soon after the milter started (baselines are learning)."},
      {"milter.spike_min_messages_per_minute", ConfigType::kInt, "60", false,
       "A spike needs at least this many messages a minute over the short window ..."},
      {"milter.spike_min_recipients_per_minute", ConfigType::kInt, "3000", false,
       "... or at least this many recipients a minute ..."},
      {"milter.spike_factor", ConfigType::kInt, "5", false,
       "... and this many times the key's baseline (or its floor)."},
      {"milter.spike_floor_messages_per_minute", ConfigType::kInt, "2", false,
       "The baseline of a new or quiet key is taken as at least this many messages a minute."},
      {"milter.spike_floor_recipients_per_minute", ConfigType::kInt, "20", false,
       "... and at least this many recipients a minute."},
      {"milter.spike_hold", ConfigType::kDuration, R"("2s")", false,
       "How long a key must stay above its threshold before its spike starts."},
      {"milter.spike_end_percent", ConfigType::kInt, "50", false,
       "A spike ends when both rates stay below this percentage of their thresholds ..."},
      {"milter.spike_end_hold", ConfigType::kDuration, R"("30s")", false,
       "... for this long (hysteresis)."},
      {"milter.spike_max_keys", ConfigType::kInt, "20000", false,
       "Keys tracked per kind (about 250 bytes each); beyond it the least active non-spiking "
       "key gives way."},
      {"milter.throttle", ConfigType::kBool, "false", false,
       "Tempfail (451 4.7.1) new outbound messages of a key above throttle_messages_per_minute. "
       "Never a permanent reject."},
      {"milter.throttle_messages_per_minute", ConfigType::kInt, "120", false,
       "The hard per-key limit of throttling, over the short window."},
      {"milter.throttle_allow", ConfigType::kStringList, "[]", false,
       "Logins, client addresses and sender domains that are never throttled."},
      {"milter.queue_watch", ConfigType::kBool, "true", false,
       "Count the MTA's queues by walking their directories (mailpulse_queue_* metrics). The "
       "daemon must be able to read them: see the operator guide."},
      {"milter.queue_interval", ConfigType::kDuration, R"("15s")", false,
       "How often the queues are walked (at least 1s)."},
      {"milter.postfix_queue_directory", ConfigType::kString, R"("/var/spool/postfix")", false,
       "Postfix's queue_directory (postconf -h queue_directory). Empty: not watched; the "
       "default path, when absent, is skipped."},
      {"milter.sendmail_queue_directory", ConfigType::kString, R"("/var/spool/mqueue")", false,
       "Sendmail's QueueDirectory (its qf files, or those of its qf/ subdirectory). Empty: not "
       "watched; the default path, when absent, is skipped."},
      {"milter.snapshot_interval", ConfigType::kDuration, "5", false,
       "How often a traffic snapshot is sent to the event socket."},
      {"milter.event_queue_size", ConfigType::kInt, "256", false,
       "Events held while the event socket is unreachable; older ones are dropped and counted."},
      {"milter.timeout", ConfigType::kDuration, "30", false,
       "libmilter's I/O timeout towards the MTA."},

      {"probe.name", ConfigType::kString, R"("")", false,
       "Name of this probe in its events (src of probe results). Empty: the host name."},
      {"probe.user", ConfigType::kString, R"("mailpulse")", false,
       "When started as root, switch to this user (and its group) after binding sockets. "
       "Password and CA files must be readable by it for a reload to reread them."},
      {"probe.metrics_listen", ConfigType::kString, R"("127.0.0.1:9798")", false,
       "ADDRESS:PORT for the probe's HTTP /metrics endpoint. Empty disables it."},
      {"probe.event_socket", ConfigType::kString, R"("unix:/run/mailpulse/events.sock")", false,
       "The shared event socket the probe owns and the milters report to (unix:/path, mode "
       "0660, or HOST:PORT). Empty: no event socket."},
      {"probe.event_listen_tls", ConfigType::kString, R"("")", false,
       "HOST:PORT of a second event socket, with TLS, for milters and probes on other hosts; "
       "each peer must present the token of probe.event_token_file. Empty: none."},
      {"probe.event_tls_cert_file", ConfigType::kString, R"("")", false,
       "PEM certificate (chain) of the TLS event socket."},
      {"probe.event_tls_key_file", ConfigType::kString, R"("")", false,
       "PEM private key of the TLS event socket (not readable by group or others)."},
      {"probe.event_token_file", ConfigType::kString, R"("")", false,
       "The shared event token (one line, mode 0600): what peers of the TLS event socket must "
       "present, and what this probe presents to a tls: probe.report_to."},
      {"probe.event_ca_file", ConfigType::kString, R"("")", false,
       "For a tls: probe.report_to: PEM CA certificates to verify the central probe with. "
       "Empty: the system store."},
      {"probe.event_socket_group", ConfigType::kString, R"("")", false,
       "Group of the unix event socket, so milters running as another user can connect. "
       "Empty: the group of probe.user."},
      {"probe.report_to", ConfigType::kString, R"("")", false,
       "Another mailpulse-probe's event socket (unix:/path or HOST:PORT) to send every check "
       "result to as a probe-result event, e.g. a central probe. Empty: results stay local."},
      {"probe.resolvers", ConfigType::kStringList, "[]", false,
       "Nameservers for every lookup of the probe (A, AAAA and MX), as IP or IP:PORT "
       "([IPv6]:PORT). Empty: those of /etc/resolv.conf."},
      {"probe.key_file", ConfigType::kString, R"("")", false,
       "The probe key shared with the milters (mailpulse-probe keygen; mode 0600): signs the "
       "messages of roundtrip targets. Empty: no round trips."},
      {"probe.roundtrip_deadline", ConfigType::kDuration, R"("10m")", false,
       "A probe message neither delivered nor bounced this long after it was sent is lost."},
      {"probe.alert_state_file", ConfigType::kString, R"("/var/lib/mailpulse/alerts.json")", false,
       "Where alert state (firing alerts, acknowledgements, silences) is kept across restarts. "
       "Empty: not kept."},
      {"probe.max_concurrent_checks", ConfigType::kInt, "64", true,
       "At most this many checks run at once; due checks wait their turn in order."},
      {"probe.jitter_percent", ConfigType::kInt, "10", true,
       "Each interval is stretched or shrunk at random by up to this percentage (0 to 50), and "
       "first checks are spread over one interval, so targets do not fire in lockstep."},
  };
  return keys;
}

// Reloadable: a SIGHUP applies new, changed and removed targets without a restart; a target
// whose check is running finishes it with the old settings.
const std::vector<ConfigSectionArray>& ConfigSectionArrays() {
  static const std::vector<ConfigSectionArray> arrays = {
      {"target",
       "One SMTP endpoint mailpulse-probe checks on a schedule; write one [[target]] section "
       "per endpoint. The keys mirror the options of `mailpulse-probe check` (docs/probe.md).",
       {
           {"name", ConfigType::kString, "", true,
            "The target's name: the `target` label of its metrics and its name in logs and "
            "events. Letters, digits and . _ - : only; unique."},
           {"host", ConfigType::kString, "", true,
            "DNS name or IP address of the server (an IPv6 address without brackets); with "
            "mx = true, a mail domain."},
           {"mx", ConfigType::kBool, "false", true,
            "host is a mail domain: check its MX hosts in preference order (RFC 5321 5.1) and "
            "each certificate against its MX host's name."},
           {"port", ConfigType::kInt, "0", true,
            "TCP port. 0: 25, or 465 with tls = \"implicit\"."},
           {"tls", ConfigType::kString, R"("none")", true,
            "none, starttls (RFC 3207) or implicit (TLS from the first byte, port 465)."},
           {"tls_name", ConfigType::kString, R"("")", true,
            "SNI and the name the certificate must carry. Empty: host."},
           {"verify", ConfigType::kBool, "true", true,
            "Verify the certificate chain and name; false only collects its facts."},
           {"tls_resume", ConfigType::kDuration, "0", true,
            "0: a full TLS handshake every check. Else resume the last check's TLS session "
            "(RFC 8446 2.2: no certificate sent or verified, about 30% less probe CPU) and do "
            "a full handshake at least this often, so a changed or broken certificate shows "
            "within it."},
           {"ca_file", ConfigType::kString, R"("")", true,
            "PEM file of CA certificates to trust instead of the system store."},
           {"family", ConfigType::kString, R"("any")", true, "any, ipv4 or ipv6."},
           {"helo", ConfigType::kString, R"("")", true, "EHLO/HELO name. Empty: the host name."},
           {"auth_user", ConfigType::kString, R"("")", true,
            "AUTH as this user after TLS (PLAIN if offered, else LOGIN)."},
           {"auth_password_file", ConfigType::kString, R"("")", true,
            "File holding the AUTH password on its first line; it must not be readable by "
            "group or others. Needed with auth_user."},
           {"send", ConfigType::kBool, "false", true,
            "Send a small synthetic message (MAIL, RCPT, DATA); needs `to`."},
           {"from", ConfigType::kString, R"("")", true,
            "Envelope sender of the message (\"\" is the null sender)."},
           {"to", ConfigType::kStringList, "[]", true, "Envelope recipients of the message."},
           {"roundtrip", ConfigType::kBool, "false", true,
            "The message of this send check is a signed probe (probe.key_file) whose journey "
            "through the milters is followed to delivery, bounce or loss (docs/roundtrip.md)."},
           {"imap_host", ConfigType::kString, R"("")", true,
            "For a roundtrip target whose last hop is a mailbox without a milter: confirm the "
            "delivery there over IMAP (found by its token, read, deleted). Empty: no IMAP."},
           {"imap_port", ConfigType::kInt, "993", true, "IMAP port (993: implicit TLS)."},
           {"imap_tls", ConfigType::kString, R"("implicit")", true, "implicit or starttls."},
           {"imap_user", ConfigType::kString, R"("")", true, "IMAP login."},
           {"imap_password_file", ConfigType::kString, R"("")", true,
            "File holding the IMAP password (mode 0600)."},
           {"imap_mailbox", ConfigType::kString, R"("INBOX")", true, "Mailbox to look in."},
           {"imap_ca_file", ConfigType::kString, R"("")", true,
            "PEM CA certificates for the IMAP server. Empty: the system store."},
           {"imap_tls_name", ConfigType::kString, R"("")", true,
            "SNI and the name the IMAP server's certificate must carry. Empty: imap_host."},
           {"imap_verify", ConfigType::kBool, "true", true,
            "Verify the IMAP server's certificate."},
           {"imap_poll", ConfigType::kDuration, R"("5s")", true,
            "How often the mailbox is looked at until the message is there or lost."},
           {"interval", ConfigType::kDuration, "60", true, "How often the target is checked."},
           {"timeout", ConfigType::kDuration, "10", true, "Deadline of one whole check."},
           {"phase_timeout", ConfigType::kDuration, "0", true,
            "Deadline of each phase (DNS and connect included). 0: the same as timeout."},
           {"warn", ConfigType::kDuration, "0", true,
            "A check slower than this is in WARNING state. 0: no threshold."},
           {"crit", ConfigType::kDuration, "0", true,
            "A check slower than this is in CRITICAL state. 0: no threshold."},
           {"cert_warn_days", ConfigType::kInt, "21", true,
            "WARNING when the certificate expires within this many days. -1: no threshold."},
           {"cert_crit_days", ConfigType::kInt, "7", true,
            "CRITICAL when the certificate expires within this many days. -1: no threshold."},
       }},
      {"alert",
       "A built-in alerting rule of mailpulse-probe run (docs/alerting.md): when a signal is "
       "bad, who is told, when the next tier is, how often it repeats. One [[alert]] per rule.",
       {
           {"name", ConfigType::kString, "", true,
            "The rule's name, in notices and alert ids (RULE/SUBJECT). Unique."},
           {"when", ConfigType::kString, "", true,
            "The signal: check_failing, latency, certificate_expiry (per target), "
            "roundtrip_lost, roundtrip_bounced (per roundtrip target), hop_latency (per hop), "
            "queue_messages, queue_age (per milter and queue), outbound_spike (per milter and "
            "key kind), milter_silent (per milter)."},
           {"match", ConfigType::kString, R"("*")", true,
            "Glob ('*' any run) on the subject: the target, hop or milter name."},
           {"checks", ConfigType::kInt, "3", true,
            "check_failing: this many failed checks in a row."},
           {"phase", ConfigType::kString, R"("total")", true,
            "latency: total, or one phase (dns, connect, banner, ehlo, starttls, tls_handshake, "
            "auth, mail, rcpt, data, end_of_data, quit)."},
           {"over", ConfigType::kDuration, "0", true,
            "latency, hop_latency, queue_age: the threshold; milter_silent: no event for this "
            "long (0: 30s)."},
           {"days", ConfigType::kInt, "14", true,
            "certificate_expiry: fewer than this many days left."},
           {"messages", ConfigType::kInt, "100", true,
            "queue_messages: more than this many messages."},
           {"queue", ConfigType::kString, R"("deferred")", true,
            "queue_messages, queue_age: which queue (maildrop, incoming, active, deferred, "
            "hold, sendmail)."},
           {"for", ConfigType::kDuration, "0", true,
            "Bad for this long before firing (latency over a threshold for a duration)."},
           {"clear", ConfigType::kDuration, "0", true,
            "Good for this long before resolving (hysteresis)."},
           {"repeat", ConfigType::kDuration, R"("4h")", true,
            "Tell again this often while firing and not acknowledged. 0: never."},
           {"flap_changes", ConfigType::kInt, "4", true,
            "This many fire/resolve changes within flap_window make it flapping: told once, "
            "then only where it settles. 0: no flap suppression."},
           {"flap_window", ConfigType::kDuration, R"("10m")", true, "See flap_changes."},
           {"severity", ConfigType::kString, R"("warning")", true, "warning or critical."},
           {"notify", ConfigType::kStringList, "", true,
            "Notifiers ([[notifier]] names) told when it fires: the first tier."},
           {"escalate", ConfigType::kStringList, "[]", true,
            "Later tiers, each \"DELAY NOTIFIER[,NOTIFIER...]\" (\"15m lead\"): told DELAY "
            "after firing if nobody acknowledged it."},
       }},
      {"notifier",
       "Where notices go (docs/alerting.md): a webhook, a chat's incoming webhook, a command or "
       "e-mail. One [[notifier]] per destination; rules name them in notify and escalate.",
       {
           {"name", ConfigType::kString, "", true, "The notifier's name. Unique."},
           {"type", ConfigType::kString, "", true,
            "webhook (JSON), slack, mattermost, discord, teams, command or email."},
           {"url_file", ConfigType::kString, R"("")", true,
            "webhook and chats: file holding the URL (http:// or https://) on its first line, "
            "mode 0600 (not readable by group or others): such URLs carry tokens. Never logged."},
           {"ca_file", ConfigType::kString, R"("")", true,
            "PEM CA certificates for an https URL or the e-mail server. Empty: system store."},
           {"command", ConfigType::kStringList, "[]", true,
            "command: the program and its arguments (no shell). The notice is JSON on its "
            "stdin and MAILPULSE_ALERT_* in its environment."},
           {"to", ConfigType::kStringList, "[]", true, "email: recipients."},
           {"from", ConfigType::kString, R"("")", true,
            "email: sender. Empty: mailpulse@ the host name."},
           {"server", ConfigType::kString, R"("")", true,
            "email: HOST[:PORT] of the submission server (port 587 by default)."},
           {"tls", ConfigType::kString, R"("starttls")", true,
            "email: none, starttls or implicit."},
           {"verify", ConfigType::kBool, "true", true,
            "Verify the server's certificate (https URL, e-mail server)."},
           {"auth_user", ConfigType::kString, R"("")", true, "email: AUTH as this user."},
           {"auth_password_file", ConfigType::kString, R"("")", true,
            "email: file holding the AUTH password (mode 0600)."},
           {"timeout", ConfigType::kDuration, R"("10s")", true, "Deadline of one attempt."},
           {"retries", ConfigType::kInt, "5", true,
            "Attempts after the first when one fails (HTTP 5xx or no answer, a command's "
            "non-zero exit, SMTP 4xx)."},
           {"retry_backoff", ConfigType::kDuration, R"("2s")", true,
            "Wait before the first retry; doubled each time, at most 5 minutes."},
       }},
  };
  return arrays;
}

}  // namespace mailpulse
