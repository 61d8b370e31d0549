// Judging and reporting one check's result: the Nagios plugin state and status line with
// perfdata, the readable per-phase report, and the failure reason as one safe line. Pure
// functions (no I/O, no clock: `now_unix` comes in), shared by `mailpulse-probe check` and the
// scheduling daemon; docs/probe.md is the reference for the formats. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probe/check_runner.h"

namespace mailpulse {

enum class NagiosState { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };
std::string_view NagiosStateName(NagiosState state);  // "OK", "WARNING", ...

struct CheckThresholds {
  std::optional<double> warn_seconds;  // total time above this: WARNING
  std::optional<double> crit_seconds;  // total time above this: CRITICAL
  std::optional<int> cert_warn_days;   // certificate days left at or below this: WARNING
  std::optional<int> cert_crit_days;   // ... CRITICAL
};

struct CheckVerdict {
  NagiosState state = NagiosState::kUnknown;
  std::string status_line;  // "SMTP OK - mx:25 0.123s | banner=0.001234s;;;0 ... total=..."
  std::string summary;      // the status line's message alone: no "SMTP STATE - ", no perfdata
};

// `target` is how the status line names the server ("mx.example.com:25"); `implicit_tls`
// orders the TLS handshake before the banner; `now_unix` dates the certificate.
CheckVerdict JudgeCheck(std::string_view target, const CheckResult& result,
                        const CheckThresholds& thresholds, bool implicit_tls,
                        std::int64_t now_unix);
// The human part: one line per phase reached, then TLS facts and capabilities.
std::string FormatCheckReport(const CheckResult& result, bool implicit_tls, bool verify,
                              std::int64_t now_unix);

// The status line for a usage or configuration error: "SMTP UNKNOWN - <message>".
std::string UnknownStatusLine(std::string_view message);

// Why a check failed, as one printable line: "550 5.1.1 <x@y>: Recipient address rejected",
// or the glue's or session's reason ("<reason>; server said: <reply>" when there are both).
std::string FailureReason(const CheckOutcome& outcome);

// Server text made fit for one status or log line: printable ASCII, no "|" (the perfdata
// separator), at most 512 characters.
std::string OneLine(std::string_view text);

// Phases in the order they happen: with implicit TLS the handshake precedes the banner.
std::vector<Phase> PhaseOrder(bool implicit_tls);

// Whole days until not_after (negative once expired), rounded down like check_http.
std::int64_t CertificateDaysLeft(std::int64_t not_after_unix, std::int64_t now_unix);

}  // namespace mailpulse
