#include "probe/alerts/alert_engine.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace mailpulse {
namespace {

using nlohmann::json;

bool Active(AlertState s) { return s == AlertState::kFiring || s == AlertState::kClearing; }

}  // namespace

const char* AlertStateName(AlertState state) {
  switch (state) {
    case AlertState::kPending:
      return "pending";
    case AlertState::kFiring:
      return "firing";
    case AlertState::kClearing:
      return "clearing";
    case AlertState::kResolved:
      return "resolved";
  }
  return "unknown";
}

const char* NoticeKindName(NoticeKind kind) {
  switch (kind) {
    case NoticeKind::kFiring:
      return "firing";
    case NoticeKind::kRepeat:
      return "repeat";
    case NoticeKind::kEscalated:
      return "escalated";
    case NoticeKind::kFlapping:
      return "flapping";
    case NoticeKind::kResolved:
      return "resolved";
  }
  return "unknown";
}

bool GlobMatch(std::string_view glob, std::string_view text) {
  // Iterative matching with backtracking to the last '*': linear in practice, never recursive.
  std::size_t g = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = t;
    } else if (g < glob.size() && glob[g] == text[t]) {
      ++g;
      ++t;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

void AlertEngine::SetRules(std::vector<AlertRule> rules) {
  rules_.clear();
  for (AlertRule& r : rules) {
    std::string name = r.name;
    rules_.emplace(std::move(name), std::move(r));
  }
  for (auto it = alerts_.begin(); it != alerts_.end();) {
    const AlertRule* rule = RuleOf(it->second);
    if (rule == nullptr) {
      changes_.erase(it->first);
      it = alerts_.erase(it);
      continue;
    }
    it->second.severity = rule->severity;
    it->second.tier = std::min(it->second.tier, rule->tiers.size() - 1);
    ++it;
  }
}

const AlertRule* AlertEngine::RuleOf(const Alert& a) const {
  auto it = rules_.find(a.rule);
  return it == rules_.end() || it->second.tiers.empty() ? nullptr : &it->second;
}

bool AlertEngine::Silenced(const Alert& a, double now) const {
  return std::any_of(silences_.begin(), silences_.end(), [&](const Silence& s) {
    return now < s.until && GlobMatch(s.rule_glob, a.rule) && GlobMatch(s.subject_glob, a.subject);
  });
}

std::vector<std::string> AlertEngine::TiersUpTo(const AlertRule& rule, std::size_t tier) const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i <= tier && i < rule.tiers.size(); ++i) {
    for (const std::string& n : rule.tiers[i].notifiers) {
      if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    }
  }
  return out;
}

void AlertEngine::Emit(NoticeKind kind, Alert& a, std::vector<std::string> notifiers, double now) {
  if (kind != NoticeKind::kResolved && Silenced(a, now)) {
    a.held_back = true;
    return;
  }
  a.last_notice_at = now;
  if (kind != NoticeKind::kResolved) a.told_firing = true;
  out_.push_back({kind, a, std::move(notifiers), now});
  if (kind == NoticeKind::kResolved) out_.back().alert.state = AlertState::kResolved;
}

bool AlertEngine::NoteChange(Alert& a, const AlertRule& rule, double now) {
  std::deque<double>& changes = changes_[a.id];
  changes.push_back(now);
  while (!changes.empty() && now - changes.front() > rule.flap_window_seconds) changes.pop_front();
  if (a.flapping || rule.flap_changes <= 0) return false;
  if (changes.size() < static_cast<std::size_t>(rule.flap_changes)) return false;
  a.flapping = true;
  return true;
}

void AlertEngine::Fire(Alert& a, const AlertRule& rule, double now) {
  a.state = AlertState::kFiring;
  a.fired_at = a.changed_at = now;
  a.tier = 0;
  a.acked_by.clear();
  a.acked_at = 0;
  if (NoteChange(a, rule, now)) {
    Emit(NoticeKind::kFlapping, a, TiersUpTo(rule, 0), now);
  } else if (!a.flapping) {
    Emit(NoticeKind::kFiring, a, rule.tiers[0].notifiers, now);
  }
}

void AlertEngine::Resolve(Alert& a, double now) {
  const AlertRule& rule = *RuleOf(a);
  if (NoteChange(a, rule, now)) Emit(NoticeKind::kFlapping, a, TiersUpTo(rule, a.tier), now);
  if (a.flapping) {
    a.state = AlertState::kResolved;  // told when the flapping ends
    a.changed_at = now;
    return;
  }
  if (a.told_firing) Emit(NoticeKind::kResolved, a, TiersUpTo(rule, a.tier), now);
  resolved_.push_back(a.id);
}

void AlertEngine::Forget(const std::string& id) { alerts_.erase(id); }

void AlertEngine::Observe(const Observation& o, double now) {
  auto rule_it = rules_.find(o.rule);
  if (rule_it == rules_.end() || rule_it->second.tiers.empty()) return;
  const AlertRule& rule = rule_it->second;
  const std::string id = o.rule + "/" + o.subject;
  auto it = alerts_.find(id);
  if (!o.bad) {
    if (it == alerts_.end()) return;
    Alert& a = it->second;
    if (a.state == AlertState::kPending) {
      if (a.flapping) {
        a.state = AlertState::kResolved;
      } else {
        Forget(id);
      }
    } else if (a.state == AlertState::kFiring) {
      a.state = AlertState::kClearing;
      a.changed_at = now;
      a.recovery = o.summary;
      if (rule.clear_seconds <= 0) Resolve(a, now);
    }
  } else {
    if (it == alerts_.end()) {
      Alert a;
      a.id = id;
      a.rule = o.rule;
      a.subject = o.subject;
      a.severity = rule.severity;
      it = alerts_.emplace(id, std::move(a)).first;
    }
    Alert& a = it->second;
    a.summary = o.summary;
    a.details = o.details;
    if (a.state == AlertState::kResolved) {
      a.state = AlertState::kPending;
      a.since = a.changed_at = now;
    } else if (a.state == AlertState::kPending && a.since == 0) {
      a.since = a.changed_at = now;
    } else if (a.state == AlertState::kClearing) {
      a.state = AlertState::kFiring;  // hysteresis: never resolved, nothing to tell
      a.changed_at = now;
    }
    Advance(a, rule, now);
  }
  for (const std::string& gone : resolved_) Forget(gone);
  resolved_.clear();
}

void AlertEngine::Advance(Alert& a, const AlertRule& rule, double now) {
  switch (a.state) {
    case AlertState::kPending:
      if (now - a.since >= rule.for_seconds) Fire(a, rule, now);
      return;
    case AlertState::kClearing:
      if (now - a.changed_at >= rule.clear_seconds) Resolve(a, now);
      return;
    case AlertState::kResolved: {
      const std::deque<double>& changes = changes_[a.id];
      if (!changes.empty() && now - changes.back() < rule.flap_window_seconds) return;
      a.flapping = false;
      if (a.told_firing) Emit(NoticeKind::kResolved, a, TiersUpTo(rule, a.tier), now);
      resolved_.push_back(a.id);
      return;
    }
    case AlertState::kFiring:
      break;
  }
  if (a.flapping) {
    const std::deque<double>& changes = changes_[a.id];
    if (!changes.empty() && now - changes.back() < rule.flap_window_seconds) return;
    a.flapping = false;  // stable for a window: say where it settled
    Emit(NoticeKind::kFiring, a, TiersUpTo(rule, a.tier), now);
    return;
  }
  if (a.held_back && !Silenced(a, now)) {
    a.held_back = false;
    Emit(NoticeKind::kFiring, a, TiersUpTo(rule, a.tier), now);
    return;
  }
  if (!a.acked_by.empty()) return;
  for (std::size_t i = a.tier + 1; i < rule.tiers.size(); ++i) {
    if (now - a.fired_at < rule.tiers[i].after_seconds) break;
    a.tier = i;
    Emit(NoticeKind::kEscalated, a, rule.tiers[i].notifiers, now);
  }
  if (rule.repeat_seconds > 0 && a.told_firing && now - a.last_notice_at >= rule.repeat_seconds) {
    Emit(NoticeKind::kRepeat, a, TiersUpTo(rule, a.tier), now);
  }
}

std::vector<Notice> AlertEngine::Tick(double now) {
  std::vector<std::string> ids;
  for (const auto& [id, a] : alerts_) ids.push_back(id);
  for (const std::string& id : ids) {
    auto it = alerts_.find(id);
    if (it == alerts_.end()) continue;
    if (const AlertRule* rule = RuleOf(it->second)) Advance(it->second, *rule, now);
  }
  for (const std::string& gone : resolved_) Forget(gone);
  resolved_.clear();
  std::erase_if(silences_, [&](const Silence& s) { return s.until <= now; });
  for (auto it = changes_.begin(); it != changes_.end();) {
    const bool stale = it->second.empty() ||
                       (!alerts_.contains(it->first) && now - it->second.back() > 24 * 3600.0);
    it = stale ? changes_.erase(it) : std::next(it);
  }
  return std::exchange(out_, {});
}

Status AlertEngine::Ack(const std::string& id, const std::string& by, double now) {
  auto it = alerts_.find(id);
  if (it == alerts_.end() || !Active(it->second.state)) {
    return Status::Error("no firing alert " + id);
  }
  it->second.acked_by = by.empty() ? "someone" : by;
  it->second.acked_at = now;
  return Status::Ok();
}

std::string AlertEngine::AddSilence(Silence silence, double) {
  silence.id = "s" + std::to_string(next_silence_++);
  if (silence.rule_glob.empty()) silence.rule_glob = "*";
  if (silence.subject_glob.empty()) silence.subject_glob = "*";
  silences_.push_back(silence);
  return silence.id;
}

Status AlertEngine::RemoveSilence(const std::string& id) {
  const auto n = std::erase_if(silences_, [&](const Silence& s) { return s.id == id; });
  return n > 0 ? Status::Ok() : Status::Error("no silence " + id);
}

std::vector<Alert> AlertEngine::Alerts() const {
  std::vector<Alert> out;
  for (const auto& [id, a] : alerts_) {
    if (a.state != AlertState::kResolved) out.push_back(a);
  }
  std::stable_sort(out.begin(), out.end(), [](const Alert& x, const Alert& y) {
    return Active(x.state) && !Active(y.state);
  });
  return out;
}

std::vector<Silence> AlertEngine::Silences(double now) const {
  std::vector<Silence> out;
  for (const Silence& s : silences_) {
    if (now < s.until) out.push_back(s);
  }
  return out;
}

std::string AlertEngine::SaveState() const {
  json alerts = json::array();
  for (const auto& [id, a] : alerts_) {
    if (a.state == AlertState::kPending) continue;
    json details = json::array();
    for (const auto& [k, v] : a.details) details.push_back({k, v});
    auto changes = changes_.find(id);
    alerts.push_back(
        {{"rule", a.rule},
         {"subject", a.subject},
         {"state", AlertStateName(a.state)},
         {"summary", a.summary},
         {"details", details},
         {"since", a.since},
         {"fired_at", a.fired_at},
         {"changed_at", a.changed_at},
         {"tier", a.tier},
         {"last_notice_at", a.last_notice_at},
         {"told_firing", a.told_firing},
         {"flapping", a.flapping},
         {"held_back", a.held_back},
         {"acked_by", a.acked_by},
         {"acked_at", a.acked_at},
         {"changes", changes == changes_.end() ? json::array() : json(changes->second)}});
  }
  json silences = json::array();
  for (const Silence& s : silences_) {
    silences.push_back({{"id", s.id},
                        {"rule", s.rule_glob},
                        {"subject", s.subject_glob},
                        {"until", s.until},
                        {"comment", s.comment},
                        {"created_by", s.created_by}});
  }
  return json{
      {"version", 1}, {"alerts", alerts}, {"silences", silences}, {"next_silence", next_silence_}}
      .dump();
}

Status AlertEngine::LoadState(const std::string& text, double now) {
  try {
    const json state = json::parse(text);
    if (state.value("version", 0) != 1) return Status::Error("unknown alert state version");
    std::map<std::string, Alert> alerts;
    std::map<std::string, std::deque<double>> changes;
    for (const json& j : state.at("alerts")) {
      Alert a;
      a.rule = j.at("rule").get<std::string>();
      a.subject = j.at("subject").get<std::string>();
      a.id = a.rule + "/" + a.subject;
      const std::string st = j.at("state").get<std::string>();
      a.state = st == "clearing"   ? AlertState::kClearing
                : st == "resolved" ? AlertState::kResolved
                                   : AlertState::kFiring;
      a.summary = j.value("summary", "");
      a.recovery = j.value("recovery", "");
      for (const json& d : j.value("details", json::array())) {
        a.details.emplace_back(d.at(0).get<std::string>(), d.at(1).get<std::string>());
      }
      a.since = j.value("since", now);
      a.fired_at = j.value("fired_at", now);
      a.changed_at = j.value("changed_at", now);
      a.tier = j.value("tier", std::size_t{0});
      a.last_notice_at = j.value("last_notice_at", 0.0);
      a.told_firing = j.value("told_firing", false);
      a.flapping = j.value("flapping", false);
      a.held_back = j.value("held_back", false);
      a.acked_by = j.value("acked_by", "");
      a.acked_at = j.value("acked_at", 0.0);
      changes[a.id] = j.value("changes", std::deque<double>{});
      const AlertRule* rule = RuleOf(a);
      if (rule == nullptr) continue;  // its rule is gone
      a.severity = rule->severity;
      a.tier = std::min(a.tier, rule->tiers.size() - 1);
      alerts[a.id] = std::move(a);
    }
    std::vector<Silence> silences;
    for (const json& j : state.at("silences")) {
      Silence s{j.at("id").get<std::string>(), j.value("rule", "*"),   j.value("subject", "*"),
                j.at("until").get<double>(),   j.value("comment", ""), j.value("created_by", "")};
      if (s.until > now) silences.push_back(std::move(s));
    }
    alerts_ = std::move(alerts);
    changes_ = std::move(changes);
    silences_ = std::move(silences);
    next_silence_ = state.value("next_silence", std::uint64_t{1});
    return Status::Ok();
  } catch (const json::exception& e) {
    return Status::Error(std::string("malformed alert state: ") + e.what());
  }
}

}  // namespace mailpulse
