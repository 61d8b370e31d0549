// event_socket_bench plays one mailpulse-milter on the probe's shared event socket: the
// milter's own event path (an EventOutbox in front of an EventSender on an event-loop thread,
// one drop counter for both, queues of milter.event_queue_size) carries HopSighting frames,
// built as the milter builds them, to a real `mailpulse-probe run` process. One scenario a run:
//
//   rate     a producer thread posts as fast as the probe takes them, keeping at most --window
//            frames queued between Post() and the socket so nothing is dropped; the rate is
//            the probe's own count (mailpulse_probe_events_received_total, kind hop_sighting,
//            scraped from its /metrics at both ends of --duration), and afterwards every frame
//            the sender handed to the socket must have been received, none dropped.
//   stopped  the probe is SIGSTOPped once events flow, --posts frames are posted back to back
//            while it reads nothing, then it is SIGCONTed: every post must be either received
//            or counted as dropped, and events must flow again.
//   killed   the probe is SIGKILLed once events flow (its socket file stays: connections are
//            refused), then --posts frames are posted.
//   missing  --socket names no socket at all, then --posts frames are posted.
//
// Every Post() call is timed with steady_clock (the timer's own cost is reported beside it).
// One JSON line goes to stdout for tests/bench/roundtrip_overhead.py, one readable line to
// stderr; the exit code is 1 when the run's accounting does not add up.
#include <event2/thread.h>
#include <pthread.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "shared/endpoint.h"
#include "shared/frame_codec.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/metrics.h"
#include "shared/net/event_outbox.h"
#include "shared/net/event_sender.h"
#include "tests/bench/observed_process.h"

namespace mailpulse {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
constexpr char kReceivedSeries[] = "mailpulse_probe_events_received_total{kind=\"hop_sighting\"}";

struct BenchOptions {
  std::string scenario;
  std::string socket;         // the probe's event socket
  std::string probe_metrics;  // HOST:PORT of the probe's /metrics
  int probe_pid = 0;
  double duration = 10;          // rate: seconds measured
  double warmup = 1;             // rate: seconds of posting before the measurement
  long posts = 1000000;          // stopped, killed, missing
  std::size_t queue_size = 256;  // milter.event_queue_size's default
  std::size_t window = 200;      // rate: frames queued at most between Post() and the socket
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double ToSeconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ToSeconds(ru.ru_utime) + ToSeconds(ru.ru_stime);
}

// The probe's count of hop sightings received: 0 before its first one.
StatusOr<long long> ScrapeReceived(const Endpoint& metrics) {
  return ScrapeCounter(metrics, kReceivedSeries);
}

// The milter's event path as milter/main.cc assembles it: a loop thread running the sender,
// the outbox every milter thread posts to, one drop counter shared by both queues.
class MilterSide {
 public:
  MilterSide(const Endpoint& probe, std::size_t queue_size)
      : base_(event_base_new()),
        sender_(base_.get(), probe, Options(queue_size), &dropped_, &sent_),
        outbox_(base_.get(), &sender_, queue_size, &dropped_) {
    thread_ = std::thread([this] { event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  MilterSide(const MilterSide&) = delete;
  MilterSide& operator=(const MilterSide&) = delete;
  ~MilterSide() {
    event_base_loopbreak(base_.get());
    thread_.join();
  }

  // The producer thread only.
  void Post(std::string frame) {
    outbox_.Post(std::move(frame));
    posted_.fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t posted() const { return posted_.load(std::memory_order_relaxed); }
  std::uint64_t sent() const { return sent_.Value(); }
  std::uint64_t dropped() const { return dropped_.Value(); }
  // Posted frames neither handed to the socket nor dropped: still in one of the two queues.
  std::uint64_t queued() const { return posted() - sent() - dropped(); }
  double LoopCpuSeconds() {
    clockid_t id;
    timespec ts{};
    if (pthread_getcpuclockid(thread_.native_handle(), &id) != 0) return 0;
    clock_gettime(id, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }

 private:
  static EventSenderOptions Options(std::size_t queue_size) {
    EventSenderOptions o;
    o.max_queued = queue_size;
    o.hello_name = "bench";
    return o;
  }

  EventBasePtr base_;
  Counter dropped_;
  Counter sent_;
  EventSender sender_;
  EventOutbox outbox_;
  std::atomic<std::uint64_t> posted_{0};
  std::thread thread_;
};

// HopSighting frames as the milter's end-of-message builds them, each with a fresh id.
std::string NextFrame(std::uint64_t n) {
  char id[33];
  std::snprintf(id, sizeof id, "%032llx", static_cast<unsigned long long>(n));
  const std::int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  proto::Event event;
  proto::HopSighting* s = event.mutable_hop_sighting();
  s->set_probe_id(id);
  s->set_probe_source("bench-probe");
  s->set_probe_time_unix_us(now - 2000);
  s->set_hop("bench");
  s->set_queue_id("4Q" + std::to_string(n));
  s->set_client_address("127.0.0.1");
  s->set_connect_unix_us(now - 1500);
  s->set_mail_unix_us(now - 1000);
  s->set_eom_unix_us(now);
  std::string frame;
  AppendEventFrame(event, &frame);
  return frame;
}

// How long each Post() took, in ns.
struct PostTimes {
  std::vector<std::uint32_t> ns;
  double build_seconds = 0;  // building the frames, beside the posts

  Json Summary() const {
    std::vector<std::uint32_t> sorted = ns;
    std::sort(sorted.begin(), sorted.end());
    const auto at = [&sorted](double p) {
      if (sorted.empty()) return 0.0;
      const auto i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
      return static_cast<double>(sorted[i]) / 1000.0;
    };
    const auto over = [&sorted](std::uint32_t limit) {
      return sorted.end() - std::upper_bound(sorted.begin(), sorted.end(), limit);
    };
    double total = 0;
    for (std::uint32_t v : sorted) total += v;
    const double n = static_cast<double>(std::max<std::size_t>(sorted.size(), 1));
    return {{"posts", sorted.size()},
            {"median_us", at(0.5)},
            {"p99_us", at(0.99)},
            {"p999_us", at(0.999)},
            {"max_us", at(1.0)},
            {"mean_us", total / n / 1000},
            {"over_100us", over(100000)},
            {"over_1ms", over(1000000)},
            {"total_seconds", total / 1e9},
            {"build_us_per_frame", build_seconds / n * 1e6}};
  }
};

// Posts frames, timing each Post(), until `stop` is set or `limit` posts are made (0: no
// limit). With a window, waits while that many frames are queued, so nothing is dropped.
void Produce(MilterSide* m, PostTimes* times, long limit, std::size_t window,
             const std::atomic<bool>* stop) {
  static std::atomic<std::uint64_t> next_id{1};
  for (long i = 0; limit == 0 || i < limit; ++i) {
    while (window > 0 && m->queued() >= window && !stop->load()) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    if (stop->load()) return;
    const Clock::time_point t0 = Clock::now();
    std::string frame = NextFrame(next_id++);
    const Clock::time_point t1 = Clock::now();
    m->Post(std::move(frame));
    const Clock::time_point t2 = Clock::now();
    times->build_seconds += Seconds(t1 - t0);
    times->ns.push_back(static_cast<std::uint32_t>(
        std::min<long long>(std::chrono::nanoseconds(t2 - t1).count(), UINT32_MAX)));
  }
}

// The cost of the two clock readings around each Post(), measured alone.
Json ClockFloor() {
  PostTimes floor;
  floor.ns.reserve(1000000);
  for (int i = 0; i < 1000000; ++i) {
    const Clock::time_point t1 = Clock::now();
    const Clock::time_point t2 = Clock::now();
    floor.ns.push_back(static_cast<std::uint32_t>(std::chrono::nanoseconds(t2 - t1).count()));
  }
  Json j = floor.Summary();
  return {{"median_us", j["median_us"]}, {"p99_us", j["p99_us"]}, {"max_us", j["max_us"]}};
}

// What the probe is doing at one moment, for the rate's two ends.
struct Snapshot {
  double at = 0;  // seconds since `origin`, the middle of the scrape
  long long received = 0;
  std::uint64_t posted = 0;
  double probe_cpu = 0, self_cpu = 0, loop_cpu = 0;
  std::pair<long long, long long> machine;
};

StatusOr<Snapshot> Take(const BenchOptions& o, const Endpoint& metrics, MilterSide* m,
                        Clock::time_point origin) {
  Snapshot s;
  const Clock::time_point before = Clock::now();
  StatusOr<long long> received = ScrapeReceived(metrics);
  if (!received.ok()) return received.status();
  s.at = Seconds(before - origin) + Seconds(Clock::now() - before) / 2;
  s.received = *received;
  s.posted = m->posted();
  s.probe_cpu = ProcessCpuSeconds(o.probe_pid);
  s.self_cpu = SelfCpuSeconds();
  s.loop_cpu = m->LoopCpuSeconds();
  s.machine = MachineTicks();
  return s;
}

// Waits until the probe has received `want` hop sightings in all.
Status AwaitReceived(const Endpoint& metrics, long long want, double timeout, long long* got) {
  Status error = Status::Ok();
  const bool ok = PollUntil(
      [&] {
        StatusOr<long long> r = ScrapeReceived(metrics);
        if (!r.ok()) error = r.status();
        *got = r.ok() ? *r : *got;
        return !r.ok() || *got >= want;
      },
      timeout);
  if (!error.ok()) return error;
  if (!ok)
    return Status::Error("the probe received " + std::to_string(*got) + " of " +
                         std::to_string(want) + " events within the deadline");
  return Status::Ok();
}

Json RunRate(const BenchOptions& o, const Endpoint& metrics, MilterSide* m, bool* ok) {
  StatusOr<long long> base = ScrapeReceived(metrics);
  if (!base.ok()) return {{"error", base.status().message()}};
  PostTimes times;
  std::atomic<bool> stop{false};
  std::thread producer([&] { Produce(m, &times, 0, o.window, &stop); });
  const Clock::time_point origin = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));  // a fixed interval
  StatusOr<Snapshot> a = Take(o, metrics, m, origin);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.duration));
  StatusOr<Snapshot> b = Take(o, metrics, m, origin);
  stop = true;
  producer.join();
  if (!a.ok() || !b.ok()) return {{"error", (a.ok() ? b.status() : a.status()).message()}};
  long long received = 0;
  Status drained =
      PollUntil([m] { return m->queued() == 0; }, 30)
          ? AwaitReceived(metrics, *base + static_cast<long long>(m->sent()), 30, &received)
          : Status::Error("frames still queued 30 s after the producer stopped");
  received -= *base;
  *ok = drained.ok() && m->dropped() == 0 && received == static_cast<long long>(m->sent());
  const double seconds = b->at - a->at;
  const double events = static_cast<double>(b->received - a->received);
  const double busy = static_cast<double>(b->machine.first - a->machine.first);
  const double total = static_cast<double>(b->machine.second - a->machine.second);
  return {{"seconds", seconds},
          {"events", events},
          {"events_per_second", events / seconds},
          {"posts_per_second", static_cast<double>(b->posted - a->posted) / seconds},
          {"probe_cpu_us_per_event", (b->probe_cpu - a->probe_cpu) / events * 1e6},
          {"driver_cpu_us_per_event", (b->self_cpu - a->self_cpu) / events * 1e6},
          {"sender_loop_cpu_us_per_event", (b->loop_cpu - a->loop_cpu) / events * 1e6},
          {"probe_busy_share", (b->probe_cpu - a->probe_cpu) / seconds},
          {"machine_busy_share", total > 0 ? busy / total : 0},
          {"posted", m->posted()},
          {"sent", m->sent()},
          {"dropped", m->dropped()},
          {"received", received},
          {"drain_error", drained.ok() ? "" : drained.message()},
          {"post", times.Summary()}};
}

// Events flowing: `n` posts (with the window) counted by the probe.
Status WarmUp(const BenchOptions& o, const Endpoint& metrics, MilterSide* m, long long base,
              long n) {
  PostTimes ignored;
  const std::atomic<bool> stop{false};
  Produce(m, &ignored, n, o.window, &stop);
  long long got = 0;
  return AwaitReceived(metrics, base + static_cast<long long>(m->sent()), 30, &got);
}

// Posts --posts frames back to back, as a milter would when the probe cannot take them.
PostTimes PostBackToBack(const BenchOptions& o, MilterSide* m, double* wall) {
  PostTimes times;
  times.ns.reserve(static_cast<std::size_t>(o.posts));
  const std::atomic<bool> stop{false};
  const Clock::time_point start = Clock::now();
  Produce(m, &times, o.posts, 0, &stop);
  *wall = Seconds(Clock::now() - start);
  return times;
}

Json Failed(const Status& s, bool* ok) {
  *ok = false;
  return {{"error", s.message()}};
}

Json RunStopped(const BenchOptions& o, const Endpoint& metrics, MilterSide* m, bool* ok) {
  StatusOr<long long> base = ScrapeReceived(metrics);
  if (!base.ok()) return Failed(base.status(), ok);
  if (Status s = WarmUp(o, metrics, m, *base, 2000); !s.ok()) return Failed(s, ok);
  const std::uint64_t sent_before = m->sent(), dropped_before = m->dropped();
  Status stopped = SignalProcess(o.probe_pid, SIGSTOP, "T");
  double wall = 0;
  const PostTimes times = stopped.ok() ? PostBackToBack(o, m, &wall) : PostTimes{};
  const std::uint64_t sent_while = m->sent() - sent_before;
  const std::uint64_t dropped_while = m->dropped() - dropped_before;
  Status resumed = SignalProcess(o.probe_pid, SIGCONT, "RSD");  // whatever happened above
  if (!stopped.ok() || !resumed.ok()) return Failed(stopped.ok() ? resumed : stopped, ok);
  const Clock::time_point resumed_at = Clock::now();
  long long received = 0;
  Status caught_up =
      PollUntil([m] { return m->queued() == 0; }, 60)
          ? AwaitReceived(metrics, *base + static_cast<long long>(m->sent()), 60, &received)
          : Status::Error("frames still queued 60 s after SIGCONT");
  const double catch_up = Seconds(Clock::now() - resumed_at);
  Status again = caught_up.ok() ? WarmUp(o, metrics, m, *base, 2000) : caught_up;
  (void)AwaitReceived(metrics, *base + static_cast<long long>(m->sent()), 5, &received);
  received -= *base;
  const long long lost = static_cast<long long>(m->posted() - m->dropped()) - received;
  *ok = again.ok() && lost == 0;
  return {{"posts_wall_seconds", wall},
          {"sent_while_stopped", sent_while},
          {"dropped_while_stopped", dropped_while},
          {"catch_up_seconds", catch_up},
          {"posted", m->posted()},
          {"sent", m->sent()},
          {"dropped", m->dropped()},
          {"received", received},
          {"lost_uncounted", lost},
          {"flowing_again", again.ok()},
          {"recovery_error", again.ok() ? "" : again.message()},
          {"post", times.Summary()}};
}

// The probe gone: killed once events flow (with `metrics`), or never there.
Json RunGone(const BenchOptions& o, const Endpoint* metrics, MilterSide* m, bool* ok) {
  if (metrics != nullptr) {
    StatusOr<long long> base = ScrapeReceived(*metrics);
    if (!base.ok()) return Failed(base.status(), ok);
    if (Status s = WarmUp(o, *metrics, m, *base, 2000); !s.ok()) return Failed(s, ok);
    if (Status s = SignalProcess(o.probe_pid, SIGKILL, "ZX"); !s.ok()) return Failed(s, ok);
  }
  const std::uint64_t sent_before = m->sent(), dropped_before = m->dropped();
  double wall = 0;
  const PostTimes times = PostBackToBack(o, m, &wall);
  // What the queues may hold; everything beyond must have been counted as dropped.
  const std::uint64_t capacity = 2 * o.queue_size;
  const bool settled = PollUntil([&] { return m->queued() <= capacity; }, 10);
  const std::uint64_t sent_after = m->sent() - sent_before;
  const std::uint64_t dropped = m->dropped() - dropped_before;
  *ok = settled && (metrics != nullptr || m->sent() == 0);
  return {{"posts_wall_seconds", wall}, {"sent_after_gone", sent_after}, {"dropped", dropped},
          {"queued", m->queued()},      {"queue_capacity", capacity},    {"post", times.Summary()}};
}

void AddOptions(CLI::App* app, BenchOptions* o) {
  app->add_option("--scenario", o->scenario, "rate, stopped, killed or missing")
      ->required()
      ->check(CLI::IsMember({"rate", "stopped", "killed", "missing"}));
  app->add_option("--socket", o->socket, "The probe's event socket (unix:/path or HOST:PORT)")
      ->required();
  app->add_option("--probe-metrics", o->probe_metrics, "HOST:PORT of the probe's /metrics");
  app->add_option("--probe-pid", o->probe_pid, "The probe's process id (signalled, measured)");
  app->add_option("--duration", o->duration, "rate: seconds measured (default 10)")
      ->check(CLI::PositiveNumber);
  app->add_option("--warmup", o->warmup, "rate: seconds before the measurement (default 1)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--posts", o->posts, "Posts back to back in the other scenarios (default 1M)")
      ->check(CLI::PositiveNumber);
  app->add_option("--queue-size", o->queue_size, "milter.event_queue_size (default 256)")
      ->check(CLI::PositiveNumber);
  app->add_option("--window", o->window, "rate: most frames queued (default 200)")
      ->check(CLI::PositiveNumber);
}

void PrintHuman(const std::string& scenario, const Json& r) {
  const Json& p = r.value("post", Json::object());
  std::fprintf(
      stderr,
      "event_socket_bench %s: %s; Post() median %.3f us, p99 %.3f us, max %.1f us over "
      "%ld posts; sent %ld, dropped %ld%s%s\n",
      scenario.c_str(), r["ok"].get<bool>() ? "ok" : "FAILED", p.value("median_us", 0.0),
      p.value("p99_us", 0.0), p.value("max_us", 0.0), p.value("posts", 0L), r.value("sent", 0L),
      r.value("dropped", 0L), r.contains("events_per_second") ? ", events/s at the probe " : "",
      r.contains("events_per_second") ? std::to_string(r["events_per_second"].get<double>()).c_str()
                                      : "");
  if (r.contains("error")) {
    std::fprintf(stderr, "event_socket_bench: %s\n", r["error"].get<std::string>().c_str());
  }
}

int Main(int argc, char** argv) {
  CLI::App app("event_socket_bench: one milter's event path into a probe's event socket");
  BenchOptions o;
  AddOptions(&app, &o);
  CLI11_PARSE(app, argc, argv);
  const bool needs_probe = o.scenario != "missing";
  if (needs_probe && (o.probe_metrics.empty() || o.probe_pid <= 0)) {
    std::fprintf(stderr, "event_socket_bench: %s needs --probe-metrics and --probe-pid\n",
                 o.scenario.c_str());
    return 2;
  }
  StatusOr<Endpoint> socket = ParseEndpoint(o.socket);
  StatusOr<Endpoint> metrics =
      needs_probe ? ParseEndpoint(o.probe_metrics) : StatusOr<Endpoint>(Endpoint{});
  if (!socket.ok() || !metrics.ok()) {
    std::fprintf(stderr, "event_socket_bench: %s\n",
                 (socket.ok() ? metrics.status() : socket.status()).message().c_str());
    return 2;
  }
  LogInit("event_socket_bench", LogTarget::kStderr, LogLevel::kWarning);
  std::signal(SIGPIPE, SIG_IGN);  // as the milter: a probe that vanishes must not kill us
  evthread_use_pthreads();        // before the event base: the outbox wakes it from our thread
  const Json floor = ClockFloor();
  bool ok = true;
  Json report;
  {
    MilterSide milter(*socket, o.queue_size);
    if (o.scenario == "rate") report = RunRate(o, *metrics, &milter, &ok);
    if (o.scenario == "stopped") report = RunStopped(o, *metrics, &milter, &ok);
    if (o.scenario == "killed") report = RunGone(o, &*metrics, &milter, &ok);
    if (o.scenario == "missing") report = RunGone(o, nullptr, &milter, &ok);
  }
  report["scenario"] = o.scenario;
  report["queue_size"] = o.queue_size;
  report["clock_floor"] = floor;
  report["ok"] = ok && !report.contains("error");
  std::printf("%s\n", report.dump().c_str());
  std::fflush(stdout);
  PrintHuman(o.scenario, report);
  return report["ok"].get<bool>() ? 0 : 1;
}

}  // namespace
}  // namespace mailpulse

int main(int argc, char** argv) { return mailpulse::Main(argc, argv); }
