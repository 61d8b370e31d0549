#include "probe/check_scheduler.h"

#include <algorithm>
#include <utility>

namespace mailpulse {
namespace {

// A restart should show every target's state soon, not a whole interval later.
constexpr double kMaxInitialSpreadSeconds = 5;
constexpr double kMaxJitter = 0.5;

}  // namespace

CheckScheduler::CheckScheduler(std::size_t max_concurrent, double jitter_fraction, Random random)
    : random_(std::move(random)) {
  SetLimits(max_concurrent, jitter_fraction);
}

void CheckScheduler::SetLimits(std::size_t max_concurrent, double jitter_fraction) {
  max_concurrent_ = std::max<std::size_t>(max_concurrent, 1);
  jitter_ = std::clamp(jitter_fraction, 0.0, kMaxJitter);
}

double CheckScheduler::Jittered(double interval) const {
  if (jitter_ <= 0) return interval;
  return interval * (1 + jitter_ * (2 * random_() - 1));
}

void CheckScheduler::SetTargets(const std::vector<Target>& targets, double now) {
  std::map<std::string, State> next;
  for (const Target& t : targets) {
    const double interval = std::max(t.interval_seconds, 0.001);
    auto old = targets_.find(t.name);
    State state;
    if (old != targets_.end()) {
      state = old->second;
      if (!state.running && state.due > now + interval) state.due = now + random_() * interval;
    } else {
      state.due = now + random_() * std::min(interval, kMaxInitialSpreadSeconds);
    }
    state.interval = interval;
    next[t.name] = state;
  }
  running_ = static_cast<std::size_t>(
      std::count_if(next.begin(), next.end(), [](const auto& e) { return e.second.running; }));
  targets_ = std::move(next);
}

std::vector<CheckScheduler::DueCheck> CheckScheduler::TakeDue(double now) {
  std::vector<std::pair<double, std::string>> due;
  for (const auto& [name, state] : targets_) {
    if (!state.running && state.due <= now) due.emplace_back(state.due, name);
  }
  std::sort(due.begin(), due.end());
  std::vector<DueCheck> out;
  for (const auto& [when, name] : due) {
    if (running_ >= max_concurrent_) break;
    State& state = targets_[name];
    state.running = true;
    ++running_;
    out.push_back({name, now - when});
  }
  return out;
}

void CheckScheduler::Finished(const std::string& name, double now) {
  auto it = targets_.find(name);
  if (it == targets_.end() || !it->second.running) return;
  State& state = it->second;
  state.running = false;
  --running_;
  // From the due time, not the start, so waiting for a slot does not shift the schedule; a
  // check that overran its next slot (slower than its interval, or long queued) is followed
  // one interval after it ended instead of at once.
  state.due += Jittered(state.interval);
  if (state.due < now) state.due = now + Jittered(state.interval);
}

std::optional<double> CheckScheduler::NextWake() const {
  if (running_ >= max_concurrent_) return std::nullopt;
  std::optional<double> next;
  for (const auto& [name, state] : targets_) {
    if (!state.running && (!next || state.due < *next)) next = state.due;
  }
  return next;
}

bool CheckScheduler::IsRunning(const std::string& name) const {
  auto it = targets_.find(name);
  return it != targets_.end() && it->second.running;
}

}  // namespace mailpulse
