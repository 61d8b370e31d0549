#include "probe/probe_result.h"

#include <cstdio>

namespace mailpulse {

std::string ResultLabel(const CheckOutcome& outcome) {
  return outcome.success ? "success" : std::string(FailureKindName(outcome.failure));
}

proto::ProbeResult MakeProbeResult(const FinishedCheck& c) {
  const CheckResult& r = *c.result;
  const CheckOutcome& o = r.outcome;
  proto::ProbeResult p;
  p.set_source(c.source);
  p.set_target(c.target);
  p.set_time_unix_us(c.start_unix_us);
  p.set_success(o.success);
  p.set_result(ResultLabel(o));
  if (!o.success) {
    p.set_failed_phase(std::string(PhaseName(o.phase)));
    p.set_reason(FailureReason(o));
    if (o.reply) {
      p.set_reply_code(o.reply->code);
      p.set_enhanced_code(OneLine(o.reply->enhanced_code));
    }
  }
  p.set_total_seconds(r.total_seconds);
  for (Phase phase : PhaseOrder(c.implicit_tls)) {
    const auto i = static_cast<std::size_t>(phase);
    if (r.phase_seconds[i] < 0) continue;
    proto::PhaseTiming* t = p.add_phases();
    t->set_phase(std::string(PhaseName(phase)));
    t->set_seconds(r.phase_seconds[i]);
    t->set_reply_code(o.reply_codes[i]);
  }
  p.set_address(r.address);
  p.set_state(std::string(NagiosStateName(c.verdict->state)));
  p.set_summary(c.verdict->summary);
  if (r.tls.established) {
    p.set_tls_version(r.tls.version);
    p.set_tls_cipher(r.tls.cipher);
    p.set_cert_not_after_unix(r.tls.not_after_unix);
    p.set_cert_verified(r.tls.verified);
    p.set_tls_resumed(r.tls.resumed);
  }
  p.set_queue_id(OneLine(o.queue_id));
  p.set_probe_id(c.probe_id);
  return p;
}

std::string CheckLogLine(const FinishedCheck& c) {
  const CheckResult& r = *c.result;
  char took[48];
  std::snprintf(took, sizeof took, " in %.3f ms", r.total_seconds * 1000);
  std::string line = "target " + c.target;
  if (!r.address.empty()) line += " (" + r.address + ")";
  line += ": " + std::string(NagiosStateName(c.verdict->state)) + " " + c.verdict->summary;
  if (!r.outcome.success) line += took;
  if (!r.outcome.queue_id.empty()) line += ", queued as " + OneLine(r.outcome.queue_id);
  return line;
}

}  // namespace mailpulse
