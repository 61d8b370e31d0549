// QueueWatch puts QueueScanner (milter/core/queue_scan.h) into the milter daemon: a thread of
// its own walks the MTA's queue directories every milter.queue_interval and publishes the
// mailpulse_queue_* metrics. Its own thread, because a walk of a large queue takes a while and
// must delay neither mail (libmilter's threads) nor /metrics and events (the event thread).
//
// The daemon needs to read the queue: Postfix keeps its queues mode 0700 for mail_owner, so it
// runs as that user (milter.user = "postfix") or keeps CAP_DAC_READ_SEARCH; see
// docs/operator-guide.md. A scan that cannot read is logged once (and again when it recovers),
// counted, and shown as mailpulse_queue_scan_success 0.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "milter/core/queue_scan.h"
#include "shared/config.h"
#include "shared/metrics.h"
#include "shared/status.h"

namespace mailpulse {

struct QueueWatchSettings {
  double interval_seconds = 15;
  struct Directory {
    MtaKind kind;
    std::string path;
    bool configured;  // set in the config file, not the built-in default
  };
  std::vector<Directory> directories;  // those configured non-empty
};

// The milter.queue_* keys; errors name the key and its file:line.
StatusOr<QueueWatchSettings> QueueWatchSettingsFrom(const Config& config);

class QueueWatch {
 public:
  // Watches each directory of `settings` that exists or was configured explicitly (a default
  // path that is absent means that MTA is not installed; it is logged and left out).
  // After each scan a QueueStatus event (named `source`) goes to `post_event`, if set; it is
  // called on the watch's thread.
  using PostEvent = std::function<void(std::string frame)>;
  QueueWatch(const QueueWatchSettings& settings, MetricsRegistry* registry, std::string source,
             PostEvent post_event);
  ~QueueWatch();  // stops and joins the thread

  bool empty() const { return scanners_.empty(); }
  void Start();  // the first scan runs at once
  void ScanAll();

 private:
  void Publish(const QueueScanner& scanner, const QueueScan& scan, double seconds);
  void Report(const QueueScanner& scanner, const QueueScan& scan);
  void LogTransition(const QueueScanner& scanner, const QueueScan& scan, std::size_t index);

  double interval_seconds_;
  std::string source_;
  PostEvent post_event_;
  std::vector<QueueScanner> scanners_;
  // Per scanner, the last error ("" when it read everything), to log only changes.
  std::vector<std::optional<std::string>> last_error_;
  GaugeFamily& messages_;
  GaugeFamily& oldest_age_;
  GaugeFamily& free_bytes_;
  GaugeFamily& free_inodes_;
  GaugeFamily& success_;
  GaugeFamily& scan_time_;
  GaugeFamily& duration_;
  CounterFamily& errors_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mailpulse
