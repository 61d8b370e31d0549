// AlertEngine turns observations ("rule R about subject S is bad/good now, and here is why")
// into notices for people: when an alert fires, repeats, escalates to the next tier, flaps or
// resolves. It owns the alert lifecycle and nothing else — what makes a check "bad" is decided
// by the caller (probe/alerts/alert_signals.h), and delivering a notice is the notifiers' job.
//
// One alert per (rule, subject): repeated bad observations never notify twice (deduplication).
//   inactive --bad--> pending --bad for `for_seconds`--> firing (notice to tier 0)
//   firing --good--> clearing --good for `clear_seconds`--> resolved (notice to every tier told)
//   clearing --bad--> firing again, with no new notice (hysteresis)
// While firing and not acknowledged: tier i is told `after_seconds` after the alert fired, and
// every tier told so far again each `repeat_seconds`. An alert that fired and resolved
// `flap_changes` times within `flap_window_seconds` is flapping: one flapping notice, then
// silence until it has kept one state for a whole window, when its state is told once. A silence
// (rule and subject globs, until a time) holds back the firing, repeat, escalation and flapping
// notices it matches; an alert still firing when the silence ends is told then. Resolved
// notices are never held back (people who were told it fired learn it is over). Acknowledging
// stops repeats and escalation; the resolved notice still goes out.
//
// Pure: time is passed in (Unix seconds, so persisted state survives a restart), nothing is
// logged. Thread-compatible.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

struct AlertTier {
  double after_seconds = 0;  // since the alert fired; the first tier's is 0
  std::vector<std::string> notifiers;
};

struct AlertRule {
  std::string name;
  std::string severity = "warning";
  double for_seconds = 0;     // bad this long before firing
  double clear_seconds = 0;   // good this long before resolving
  double repeat_seconds = 0;  // 0: never repeat
  int flap_changes = 4;       // fire/resolve changes within the window that make it flap; 0: off
  double flap_window_seconds = 600;
  std::vector<AlertTier> tiers;  // at least one
};

using AlertDetails = std::vector<std::pair<std::string, std::string>>;

struct Observation {
  std::string rule;
  std::string subject;  // what the alert is about: a target, a hop, a queue, a milter
  bool bad = false;
  std::string summary;   // one line for people: "mx1: connect refused (3 checks in a row)"
  AlertDetails details;  // phase, reply, latency ...: for payloads, in this order
};

// kResolved: resolved while flapping, kept (and not listed) until the flapping ends.
enum class AlertState { kPending, kFiring, kClearing, kResolved };
enum class NoticeKind { kFiring, kRepeat, kEscalated, kFlapping, kResolved };

const char* AlertStateName(AlertState state);  // "pending", "firing", "clearing", "resolved"
const char* NoticeKindName(NoticeKind kind);   // "firing", "repeat", "escalated", ...

struct Alert {
  std::string id;  // "RULE/SUBJECT": what `ack` takes
  std::string rule;
  std::string subject;
  std::string severity;
  AlertState state = AlertState::kPending;
  std::string summary;
  AlertDetails details;
  std::string recovery;   // the summary of the good observation that began its clearing
  double since = 0;       // when it became bad (pending) — kept through firing
  double fired_at = 0;    // 0 until it fires
  double changed_at = 0;  // of the last bad/good change, for clearing
  std::size_t tier = 0;   // highest tier told
  double last_notice_at = 0;
  bool told_firing = false;  // a firing notice reached the notifiers (not held back)
  bool flapping = false;
  std::string acked_by;  // empty: not acknowledged
  double acked_at = 0;
  bool held_back = false;  // a silence held back a firing notice
};

struct Silence {
  std::string id;
  std::string rule_glob = "*";
  std::string subject_glob = "*";
  double until = 0;
  std::string comment;
  std::string created_by;
};

struct Notice {
  NoticeKind kind;
  Alert alert;  // as it is at the notice (state resolved for a resolved notice)
  std::vector<std::string> notifiers;
  double at = 0;
};

class AlertEngine {
 public:
  // Rules by name. Alerts of rules that no longer exist are dropped without a notice; the
  // others keep their state under the new settings.
  void SetRules(std::vector<AlertRule> rules);

  // One observation at `now`. Notices it causes are returned by the next Tick.
  void Observe(const Observation& o, double now);
  // Time-driven changes (firing after `for`, resolving, escalation, repeats, ends of flapping
  // and silences) and every notice pending since the last call, in order.
  std::vector<Notice> Tick(double now);

  // Acknowledges the alert `id` (stops repeats and escalation). Error: no such firing alert.
  Status Ack(const std::string& id, const std::string& by, double now);
  // Adds a silence; returns its id ("s1", "s2" ...). Globs: '*' matches any run of characters.
  std::string AddSilence(Silence silence, double now);
  Status RemoveSilence(const std::string& id);

  std::vector<Alert> Alerts() const;                // firing and clearing first, then pending
  std::vector<Silence> Silences(double now) const;  // those not yet over

  // State across restarts: alerts that fired (pending ones start over) and silences, as JSON.
  std::string SaveState() const;
  Status LoadState(const std::string& json, double now);

 private:
  const AlertRule* RuleOf(const Alert& a) const;
  bool Silenced(const Alert& a, double now) const;
  void Fire(Alert& a, const AlertRule& rule, double now);
  void Resolve(Alert& a, double now);
  void Emit(NoticeKind kind, Alert& a, std::vector<std::string> notifiers, double now);
  bool NoteChange(Alert& a, const AlertRule& rule, double now);
  void Forget(const std::string& id);
  void Advance(Alert& a, const AlertRule& rule, double now);
  std::vector<std::string> TiersUpTo(const AlertRule& rule, std::size_t tier) const;

  std::map<std::string, AlertRule> rules_;
  std::map<std::string, Alert> alerts_;                // by id
  std::vector<std::string> resolved_;                  // ids to erase after this Tick's notices
  std::map<std::string, std::deque<double>> changes_;  // by id: fire/resolve times in the window
  std::vector<Silence> silences_;
  std::uint64_t next_silence_ = 1;
  std::vector<Notice> out_;
};

// Whether `text` matches `glob`, where '*' stands for any run of characters (none included).
bool GlobMatch(std::string_view glob, std::string_view text);

}  // namespace mailpulse
