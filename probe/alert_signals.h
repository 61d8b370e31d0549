// AlertSignals decides, for every [[alert]] rule, whether what just happened is bad or good for
// its subject, and says why in words: a finished check (check_failing, latency,
// certificate_expiry), a finished journey (roundtrip_lost, roundtrip_bounced, hop_latency), a
// milter's event (queue_messages, queue_age, outbound_spike; any event keeps milter_silent
// quiet), and the passing of time (milter_silent). The observations go to the AlertEngine,
// which owns the lifecycle. Pure: time comes in, nothing is logged. Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "probe/alerts/alert_config.h"
#include "probe/alerts/alert_engine.h"
#include "probe/check_runner.h"
#include "probe/check_verdict.h"
#include "probe/correlator.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {

class AlertSignals {
 public:
  explicit AlertSignals(std::vector<AlertRuleSpec> rules) : rules_(std::move(rules)) {}
  void SetRules(std::vector<AlertRuleSpec> rules) { rules_ = std::move(rules); }

  std::vector<Observation> OnCheck(const std::string& target, const CheckResult& result,
                                   const CheckVerdict& verdict, std::int64_t now_unix);
  std::vector<Observation> OnJourney(const Journey& journey);
  // An event from milter `peer` (its hop name from the event, else the peer's address).
  std::vector<Observation> OnEvent(const proto::Event& event, double now_unix);
  std::vector<Observation> OnTick(double now_unix);

 private:
  std::vector<AlertRuleSpec> rules_;
  std::map<std::string, int> failures_in_a_row_;  // by target
  std::map<std::string, double> last_heard_;      // by milter source
};

}  // namespace mailpulse
