#include "probe/alert_center.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shared/clock.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

using nlohmann::json;

double Now() { return static_cast<double>(UnixMicros()) / 1e6; }

json AlertJson(const Alert& a) {
  json details = json::object();
  for (const auto& [k, v] : a.details) details[k] = v;
  return {{"id", a.id},
          {"rule", a.rule},
          {"subject", a.subject},
          {"severity", a.severity},
          {"state", AlertStateName(a.state)},
          {"summary", a.summary},
          {"details", details},
          {"since", a.since},
          {"fired_at", a.fired_at},
          {"tier", a.tier},
          {"flapping", a.flapping},
          {"acked_by", a.acked_by},
          {"acked_at", a.acked_at}};
}

std::pair<int, std::string> Reply(int status, json body) { return {status, body.dump()}; }
std::pair<int, std::string> Error(int status, const std::string& message) {
  return Reply(status, {{"error", message}});
}

}  // namespace

AlertCenter::AlertCenter(event_base* base, Resolver* resolver, MetricsRegistry* registry,
                         std::string probe_name, std::string state_file)
    : base_(base),
      state_file_(std::move(state_file)),
      notifiers_(base, resolver, registry, std::move(probe_name)),
      firing_(registry->AddGauge("mailpulse_alerts_firing",
                                 "Alerts of each rule firing now (built-in alerting).", {"rule"})),
      notices_(registry->AddCounter("mailpulse_alert_notices_total",
                                    "Notices the built-in alerting sent, by rule and kind "
                                    "(firing, repeat, escalated, flapping, resolved).",
                                    {"rule", "kind"})) {}

Status AlertCenter::Configure(const AlertSettings& settings) {
  if (Status s = notifiers_.Configure(settings.notifiers); !s.ok()) return s;
  std::vector<AlertRule> rules;
  rule_names_.clear();
  for (const AlertRuleSpec& r : settings.rules) {
    rules.push_back(r.rule);
    rule_names_.push_back(r.rule.name);
    firing_.WithLabels({r.rule.name});
  }
  engine_.SetRules(std::move(rules));
  signals_.SetRules(settings.rules);
  return Status::Ok();
}

void AlertCenter::LoadState() {
  if (state_file_.empty()) return;
  std::ifstream in(state_file_);
  if (!in) {
    if (errno != ENOENT) {
      MP_LOG_WARNING("alert state %s: %s", state_file_.c_str(), std::strerror(errno));
    }
    saved_ = engine_.SaveState();  // nothing to write until something happens
    return;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (Status s = engine_.LoadState(text.str(), Now()); !s.ok()) {
    MP_LOG_WARNING("alert state %s: %s; starting without it", state_file_.c_str(),
                   s.message().c_str());
    return;
  }
  saved_ = text.str();
  MP_LOG_INFO("alert state %s: %zu alerts, %zu silences", state_file_.c_str(),
              engine_.Alerts().size(), engine_.Silences(Now()).size());
}

void AlertCenter::Start() {
  timer_.reset(event_new(base_, -1, EV_PERSIST, &AlertCenter::OnTimer, this));
  const timeval second{1, 0};
  event_add(timer_.get(), &second);
}

void AlertCenter::OnTimer(evutil_socket_t, short, void* arg) noexcept {
  try {
    static_cast<AlertCenter*>(arg)->Tick();
  } catch (const std::exception& e) {
    MP_LOG_ERROR("alerting: %s", e.what());
  }
}

void AlertCenter::Observe(const std::vector<Observation>& observations) {
  const double now = Now();
  for (const Observation& o : observations) engine_.Observe(o, now);
}

void AlertCenter::OnCheck(const std::string& target, const CheckResult& result,
                          const CheckVerdict& verdict) {
  Observe(signals_.OnCheck(target, result, verdict, UnixMicros() / 1000000));
  Tick();  // tell at once, not up to a second later
}

void AlertCenter::OnJourney(const Journey& journey) { Observe(signals_.OnJourney(journey)); }

void AlertCenter::OnEvent(const proto::Event& event) { Observe(signals_.OnEvent(event, Now())); }

void AlertCenter::Tick() {
  const double now = Now();
  Observe(signals_.OnTick(now));
  for (const Notice& n : engine_.Tick(now)) {
    notices_.WithLabels({n.alert.rule, NoticeKindName(n.kind)}).Inc();
    const bool resolved = n.kind == NoticeKind::kResolved;
    if (resolved) {
      MP_LOG_INFO("alert %s resolved: %s", n.alert.id.c_str(), n.alert.summary.c_str());
    } else {
      MP_LOG_WARNING("alert %s %s: %s", n.alert.id.c_str(), NoticeKindName(n.kind),
                     n.alert.summary.c_str());
    }
    notifiers_.Deliver(n);
  }
  std::map<std::string, int> firing;
  for (const std::string& r : rule_names_) firing[r] = 0;
  for (const Alert& a : engine_.Alerts()) {
    if (a.state == AlertState::kFiring || a.state == AlertState::kClearing) ++firing[a.rule];
  }
  for (const auto& [rule, n] : firing) firing_.WithLabels({rule}).Set(n);
  SaveState();
}

void AlertCenter::SaveState() {
  if (state_file_.empty()) return;
  std::string state = engine_.SaveState();
  if (state == saved_) return;
  const std::string tmp = state_file_ + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  const int error = errno;
  if (ok) {
    ok = write(fd, state.data(), state.size()) == static_cast<ssize_t>(state.size());
    ok = (close(fd) == 0) && ok;
    ok = ok && rename(tmp.c_str(), state_file_.c_str()) == 0;
  }
  if (!ok) {
    if (!save_failed_) {
      MP_LOG_WARNING(
          "alert state %s: cannot write it (%s); acknowledgements and silences will not "
          "survive a restart",
          state_file_.c_str(), std::strerror(fd >= 0 ? errno : error));
    }
    save_failed_ = true;
    return;
  }
  if (save_failed_) MP_LOG_INFO("alert state %s: written again", state_file_.c_str());
  save_failed_ = false;
  saved_ = std::move(state);
}

std::optional<std::string> AlertCenter::Get(std::string_view path) const {
  if (path != "/alerts") return std::nullopt;
  const double now = Now();
  json alerts = json::array();
  for (const Alert& a : engine_.Alerts()) alerts.push_back(AlertJson(a));
  json silences = json::array();
  for (const Silence& s : engine_.Silences(now)) {
    silences.push_back({{"id", s.id},
                        {"rule", s.rule_glob},
                        {"subject", s.subject_glob},
                        {"until", s.until},
                        {"comment", s.comment},
                        {"created_by", s.created_by}});
  }
  return json{{"alerts", alerts}, {"silences", silences}}.dump();
}

std::optional<std::pair<int, std::string>> AlertCenter::Post(std::string_view path,
                                                             std::string_view body) {
  if (path != "/alerts/ack" && path != "/silences" && path != "/silences/remove") {
    return std::nullopt;
  }
  const json request = json::parse(body, nullptr, false);
  if (!request.is_object()) return Error(400, "expected a JSON object");
  const double now = Now();
  const auto text = [&](const char* key) {
    return request.contains(key) && request[key].is_string() ? request[key].get<std::string>()
                                                             : std::string();
  };
  std::pair<int, std::string> reply;
  if (path == "/alerts/ack") {
    const std::string id = text("id"), by = text("by");
    if (Status s = engine_.Ack(id, by, now); !s.ok()) return Error(404, s.message());
    MP_LOG_INFO("alert %s acknowledged by %s", id.c_str(), by.empty() ? "someone" : by.c_str());
    reply = Reply(200, {{"acknowledged", id}});
  } else if (path == "/silences") {
    const double seconds = request.value("seconds", 0.0);
    if (!(seconds > 0)) return Error(400, "a silence needs a positive duration");
    Silence s{"", text("rule"), text("subject"), now + seconds, text("comment"), text("by")};
    if (s.rule_glob.empty()) s.rule_glob = "*";
    if (s.subject_glob.empty()) s.subject_glob = "*";
    const std::string id = engine_.AddSilence(s, now);
    MP_LOG_INFO("silence %s: rule %s subject %s for %gs by %s (%s)", id.c_str(),
                s.rule_glob.c_str(), s.subject_glob.c_str(), seconds,
                s.created_by.empty() ? "someone" : s.created_by.c_str(), s.comment.c_str());
    reply = Reply(200, {{"id", id}, {"until", s.until}});
  } else {
    const std::string id = text("id");
    if (Status s = engine_.RemoveSilence(id); !s.ok()) return Error(404, s.message());
    MP_LOG_INFO("silence %s removed", id.c_str());
    reply = Reply(200, {{"removed", id}});
  }
  SaveState();
  return reply;
}

}  // namespace mailpulse
