// What the scheduling daemon makes of one finished check besides metrics: the probe-result
// event for the shared event socket, and the log line. Pure functions. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "probe/check_runner.h"
#include "probe/check_verdict.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {

struct FinishedCheck {
  std::string source;  // the probe's name
  std::string target;  // the target's name
  std::int64_t start_unix_us = 0;
  bool implicit_tls = false;
  std::string probe_id;  // a send check's message id; empty otherwise
  const CheckResult* result = nullptr;
  const CheckVerdict* verdict = nullptr;
};

// `result` for the check, "success" or the failure kind name.
std::string ResultLabel(const CheckOutcome& outcome);

proto::ProbeResult MakeProbeResult(const FinishedCheck& check);

// One line per check: "target mx1 (127.0.0.1:25): CRITICAL reply_permanent at rcpt: 550 5.1.1
// <x@y>: ... in 2.711 ms". Untrusted text is already made printable by the verdict.
std::string CheckLogLine(const FinishedCheck& check);

}  // namespace mailpulse
