// CheckScheduler decides when each target is checked. Every target runs once per interval,
// each interval stretched or shrunk at random by up to the jitter fraction so targets do not
// fire in lockstep; first checks are spread over the first min(interval, 5 s). One target is
// never checked twice at once: its next check is due one interval after the last one was due,
// or, if the check overran that, one interval after it ended. At most `max_concurrent` checks run
// at once; due checks beyond that wait, earliest due first. Pure logic: time is an argument
// (seconds on a monotonic clock) and the randomness is injected, so tests read like a timetable.
// Not thread-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mailpulse {

class CheckScheduler {
 public:
  // Uniform in [0, 1).
  using Random = std::function<double()>;

  struct Target {
    std::string name;
    double interval_seconds = 60;
  };
  struct DueCheck {
    std::string name;
    double late_seconds = 0;  // how long it waited past its due time (for the concurrency bound)
  };

  CheckScheduler(std::size_t max_concurrent, double jitter_fraction, Random random);

  // Replaces the set of targets. A name already known keeps its schedule (and a running check
  // stays running); a shorter interval pulls its next check in. New names get a first check
  // spread over min(interval, 5 s) from `now`; names no longer present are forgotten.
  void SetTargets(const std::vector<Target>& targets, double now);
  // New concurrency bound and jitter (a reload); running checks are not affected.
  void SetLimits(std::size_t max_concurrent, double jitter_fraction);

  // The checks to start now, earliest due first, within the concurrency bound; each is marked
  // running until Finished.
  std::vector<DueCheck> TakeDue(double now);
  // The check of `name` ended at `now` (unknown names are ignored: removed meanwhile).
  void Finished(const std::string& name, double now);

  // When TakeDue will next have something, or nullopt when nothing can start before a check
  // finishes (no targets, or all running, or the bound reached).
  std::optional<double> NextWake() const;

  std::size_t running() const { return running_; }
  bool IsRunning(const std::string& name) const;
  std::size_t size() const { return targets_.size(); }

 private:
  struct State {
    double interval = 60;
    double due = 0;
    bool running = false;
  };
  double Jittered(double interval) const;

  std::size_t max_concurrent_;
  double jitter_;
  Random random_;
  std::map<std::string, State> targets_;
  std::size_t running_ = 0;
};

}  // namespace mailpulse
