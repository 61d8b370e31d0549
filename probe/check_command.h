// `mailpulse-probe check`: one synthetic SMTP check for people and for Nagios-style monitors
// (Nagios, Icinga, Checkmk, Zabbix). It runs a CheckRunner on its own event loop, prints a
// per-phase report and ends with one plugin status line with perfdata; the exit code follows
// the plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. docs/probe.md is the
// reference. The formatting and judging functions below touch no I/O and are exposed for tests.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probe/check_runner.h"
#include "shared/endpoint.h"
#include "shared/status.h"

namespace CLI {
class App;
}

namespace mailpulse {

// What the command line says, as given (validated by RunCheckCommand).
struct CheckCommandOptions {
  std::string target;  // HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address
  std::string tls = "none";
  std::string tls_name;
  std::string auth_user;
  std::string auth_password_file;
  std::string from;
  std::vector<std::string> to;
  bool send = false;
  std::string helo;
  double timeout = 10;
  double phase_timeout = -1;  // -1: the same as timeout
  double warn = -1;           // -1: no threshold
  double crit = -1;
  int cert_warn_days = -1;
  int cert_crit_days = -1;
  std::string ca_file;
  bool insecure = false;
  bool ipv4 = false;
  bool ipv6 = false;
  bool quiet = false;
  bool verbose = false;
};

// Adds the `check` subcommand to `app`, storing into *options; returns the subcommand.
CLI::App* AddCheckCommand(CLI::App* app, CheckCommandOptions* options);

// Runs the check and prints the report and status line to stdout; returns the exit code.
int RunCheckCommand(const CheckCommandOptions& options);

// The status line for a usage or configuration error: "SMTP UNKNOWN - <message>".
std::string UnknownStatusLine(std::string_view message);

enum class NagiosState { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };

struct CheckThresholds {
  std::optional<double> warn_seconds;  // total time above this: WARNING
  std::optional<double> crit_seconds;  // total time above this: CRITICAL
  std::optional<int> cert_warn_days;   // certificate days left at or below this: WARNING
  std::optional<int> cert_crit_days;   // ... CRITICAL
};

struct CheckVerdict {
  NagiosState state = NagiosState::kUnknown;
  std::string status_line;  // "SMTP OK - mx:25 0.123s | banner=0.001234s;;;0 ... total=..."
};

// `target` is how the status line names the server ("mx.example.com:25"); `implicit_tls`
// orders the TLS handshake before the banner; `now_unix` dates the certificate.
CheckVerdict JudgeCheck(std::string_view target, const CheckResult& result,
                        const CheckThresholds& thresholds, bool implicit_tls,
                        std::int64_t now_unix);
// The human part: one line per phase reached, then TLS facts and capabilities.
std::string FormatCheckReport(const CheckResult& result, bool implicit_tls, bool verify,
                              std::int64_t now_unix);

// Whole days until not_after (negative once expired), rounded down like check_http.
std::int64_t CertificateDaysLeft(std::int64_t not_after_unix, std::int64_t now_unix);

// HOST[:PORT] with `default_port` when none is given; "[2001:db8::1]:25" or a bare IPv6.
StatusOr<Endpoint> ParseCheckTarget(std::string_view text, std::uint16_t default_port);

// The password from a file that only its owner may read; trailing CR/LF removed.
StatusOr<std::string> ReadPasswordFile(const std::string& path);

// The synthetic message of a send check.
struct ProbeMessageFields {
  std::string from;  // envelope sender; "" is the null sender
  std::vector<std::string> to;
  std::string domain;  // right-hand side of the Message-ID
  std::string id;      // 128-bit random hex: the Message-ID and, later, the probe token id
  std::time_t date = 0;
};
// Where the round-trip issue adds the signed `X-Mailpulse-Probe:` header (DESIGN.md, "Probe
// token"): returns complete header lines ending in CRLF. Probe messages carry none yet.
std::string ProbeTokenHeaderLines(const ProbeMessageFields& fields);
// Date, From, To, Subject "mailpulse probe", Message-ID, the token lines, and a short body.
std::string BuildProbeMessage(const ProbeMessageFields& fields);
std::string NewProbeId();

}  // namespace mailpulse
