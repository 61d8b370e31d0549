#include "milter/queue_watch.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <utility>

#include "shared/clock.h"
#include "shared/frame_codec.h"
#include "shared/logging.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {
namespace {

constexpr char kPostfixKey[] = "milter.postfix_queue_directory";
constexpr char kSendmailKey[] = "milter.sendmail_queue_directory";

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

double UnixSeconds() { return static_cast<double>(UnixMicros()) / 1e6; }

}  // namespace

StatusOr<QueueWatchSettings> QueueWatchSettingsFrom(const Config& config) {
  QueueWatchSettings s;
  s.interval_seconds = config.GetSeconds("milter.queue_interval");
  if (s.interval_seconds < 1) {
    return Status::Error(config.Where("milter.queue_interval") +
                         ": milter.queue_interval: must be at least 1s");
  }
  if (!config.GetBool("milter.queue_watch")) return s;
  for (const auto& [kind, key] :
       {std::pair{MtaKind::kPostfix, kPostfixKey}, std::pair{MtaKind::kSendmail, kSendmailKey}}) {
    const std::string& path = config.GetString(key);
    if (path.empty()) continue;
    if (path.front() != '/') {
      return Status::Error(config.Where(key) + ": " + key + ": must be an absolute path");
    }
    s.directories.push_back({kind, path, config.Where(key) != "built-in default"});
  }
  return s;
}

QueueWatch::QueueWatch(const QueueWatchSettings& settings, MetricsRegistry* registry,
                       std::string source, PostEvent post_event)
    : interval_seconds_(settings.interval_seconds),
      source_(std::move(source)),
      post_event_(std::move(post_event)),
      messages_(registry->AddGauge("mailpulse_queue_messages",
                                   "Messages in each queue of the MTA, by directory walk.",
                                   {"mta", "queue"})),
      oldest_age_(registry->AddGauge(
          "mailpulse_queue_oldest_age_seconds",
          "Age of the oldest message of each queue (since it arrived); 0 when empty.",
          {"mta", "queue"})),
      free_bytes_(registry->AddGauge("mailpulse_queue_filesystem_free_bytes",
                                     "Free bytes (for non-root users) on the queue's filesystem.",
                                     {"mta"})),
      free_inodes_(registry->AddGauge("mailpulse_queue_filesystem_free_inodes",
                                      "Free inodes (for non-root users) on the queue's filesystem.",
                                      {"mta"})),
      success_(registry->AddGauge("mailpulse_queue_scan_success",
                                  "1 if the last queue scan could read every queue, else 0.",
                                  {"mta"})),
      scan_time_(registry->AddGauge("mailpulse_queue_scan_timestamp_seconds",
                                    "Unix time of the last successful queue scan.", {"mta"})),
      duration_(registry->AddGauge("mailpulse_queue_scan_duration_seconds",
                                   "How long the last queue scan took.", {"mta"})),
      errors_(registry->AddCounter("mailpulse_queue_scan_errors_total",
                                   "Queue scans that could not read the queue.", {"mta"})) {
  for (const QueueWatchSettings::Directory& d : settings.directories) {
    if (!d.configured && !Exists(d.path)) {
      MP_LOG_INFO("queue watch: no %s queue at %s; not watched",
                  std::string(MtaName(d.kind)).c_str(), d.path.c_str());
      continue;
    }
    scanners_.emplace_back(d.kind, d.path);
  }
  last_error_.resize(scanners_.size());
}

QueueWatch::~QueueWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void QueueWatch::Start() {
  thread_ = std::thread([this] {
    const auto interval = std::chrono::duration<double>(interval_seconds_);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      ScanAll();
      lock.lock();
      wake_.wait_for(lock, interval, [this] { return stop_; });
    }
  });
}

void QueueWatch::ScanAll() {
  for (std::size_t i = 0; i < scanners_.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const QueueScan scan = scanners_[i].Scan();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    LogTransition(scanners_[i], scan, i);
    Publish(scanners_[i], scan, took.count());
    if (post_event_) Report(scanners_[i], scan);
  }
}

void QueueWatch::Report(const QueueScanner& scanner, const QueueScan& scan) {
  proto::Event event;
  proto::QueueStatus* q = event.mutable_queue_status();
  q->set_source(source_);
  q->set_mta(std::string(MtaName(scanner.kind())));
  q->set_ok(scan.ok);
  q->set_error(scan.error);
  const std::int64_t now_us = UnixMicros();
  for (const QueueCount& c : scan.queues) {
    proto::QueueCount* out = q->add_queues();
    out->set_queue(c.queue);
    out->set_messages(c.messages);
    out->set_oldest_age_seconds(c.messages == 0 ? 0
                                                : static_cast<double>(now_us) / 1e6 -
                                                      static_cast<double>(c.oldest_arrival));
  }
  q->set_free_bytes(scan.free_bytes);
  q->set_free_inodes(scan.free_inodes);
  q->set_time_unix_us(now_us);
  std::string frame;
  AppendEventFrame(event, &frame);
  post_event_(std::move(frame));
}

void QueueWatch::Publish(const QueueScanner& scanner, const QueueScan& scan, double seconds) {
  const std::string_view mta = MtaName(scanner.kind());
  success_.WithLabels({mta}).Set(scan.ok ? 1 : 0);
  duration_.WithLabels({mta}).Set(seconds);
  if (!scan.ok) {
    // The last good figures stay; scan_success and the timestamp say how old they are.
    errors_.WithLabels({mta}).Inc();
    return;
  }
  const double now = UnixSeconds();
  for (const QueueCount& q : scan.queues) {
    messages_.WithLabels({mta, q.queue}).Set(static_cast<double>(q.messages));
    oldest_age_.WithLabels({mta, q.queue})
        .Set(q.messages == 0 ? 0 : now - static_cast<double>(q.oldest_arrival));
  }
  free_bytes_.WithLabels({mta}).Set(static_cast<double>(scan.free_bytes));
  free_inodes_.WithLabels({mta}).Set(static_cast<double>(scan.free_inodes));
  scan_time_.WithLabels({mta}).Set(now);
}

void QueueWatch::LogTransition(const QueueScanner& scanner, const QueueScan& scan,
                               std::size_t index) {
  // One line when the state changes: first scan, failure (or another failure), recovery.
  std::optional<std::string>& last = last_error_[index];
  const std::string error = scan.ok ? "" : scan.error;
  if (last == error) return;
  const bool first = !last.has_value();
  last = error;
  const std::string mta(MtaName(scanner.kind()));
  if (scan.ok) {
    MP_LOG_INFO(first ? "queue watch: %s queue at %s, every %gs"
                      : "queue watch: the %s queue at %s is readable again (every %gs)",
                mta.c_str(), scanner.directory().c_str(), interval_seconds_);
    return;
  }
  const char* hint = "";
  if (scan.error_number == EACCES) {
    hint = mta == "postfix"
               ? "; the queue belongs to Postfix's mail_owner: run mailpulse-milter as that user "
                 "(milter.user = \"postfix\") or with CAP_DAC_READ_SEARCH"
               : "; run mailpulse-milter with CAP_DAC_READ_SEARCH to read Sendmail's queue";
  }
  MP_LOG_WARNING("queue watch: %s (running as uid %d)%s", scan.error.c_str(),
                 static_cast<int>(geteuid()), hint);
}

}  // namespace mailpulse
