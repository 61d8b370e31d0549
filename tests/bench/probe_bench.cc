// probe_bench: a load driver for the probe's check glue. It runs many CheckRunners at once on
// ONE libevent loop in one process, sharing one TLS context and one resolver — the way the
// probe daemon runs its scheduled checks — and keeps `--concurrency` checks in flight until
// `--checks` are done or `--duration` has passed. Several targets share the checks round-robin. It
// reports what a benchmark needs to judge the probe: checks done and their verdicts by failure kind
// (a run with any failure says so and exits 1), wall time and checks per second, the process's own
// CPU per check (getrusage, counted from the first check on: setup such as loading the TLS context
// is excluded, as a daemon pays it once), peak RSS (VmHWM), and the peak number of checks in flight
// and of open sockets. One JSON line goes to stdout for tests/bench/probe_compare.py, one readable
// line to stderr.
#include <dirent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "probe/check_command.h"
#include "probe/check_runner.h"
#include "probe/resolver.h"
#include "probe/smtp/smtp_text.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::vector<std::string> targets;
  std::string tls = "none";
  bool insecure = false;
  std::string ca_file;
  std::string tls_name;
  std::string helo = "bench.mailpulse.test";
  long checks = 0;       // total; 0: as many as fit into --duration
  double duration = 0;   // seconds of launching; 0: until --checks are done
  long concurrency = 1;  // checks in flight at once
  double timeout = 30;   // per check, overall and per phase
  double sample_interval = 0.1;
  bool resume = false;  // each check resumes the TLS session the last finished one left
};

struct DirDeleter {
  void operator()(DIR* d) const noexcept { closedir(d); }
};

double ToSeconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

struct CpuTime {
  double user = 0;
  double system = 0;
};

CpuTime ProcessCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {ToSeconds(ru.ru_utime), ToSeconds(ru.ru_stime)};
}

// A "VmHWM:   1234 kB" style field of /proc/self/status, in KiB; -1 when absent.
long StatusFieldKib(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::stol(line.substr(name.size() + 1));
  }
  return -1;
}

// Open descriptors, from /proc/self/fd (the directory's own descriptor not counted). Cheap
// enough to sample a few times a second even with 10,000 sockets open.
long OpenFds() {
  std::unique_ptr<DIR, DirDeleter> dir(opendir("/proc/self/fd"));
  if (!dir) return -1;
  long n = 0;
  while (const dirent* e = readdir(dir.get())) {
    if (e->d_name[0] != '.') ++n;
  }
  return n - 1;
}

// Every check holds a socket; a large --concurrency needs more than the usual 1024. Root may
// raise the hard limit too.
Status RaiseFdLimit(long concurrency) {
  const auto needed = static_cast<rlim_t>(concurrency + 64);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return Status::Error("getrlimit(RLIMIT_NOFILE) failed");
  if (lim.rlim_cur >= needed) return Status::Ok();
  lim.rlim_cur = needed;
  if (lim.rlim_max < needed) lim.rlim_max = needed;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return Status::Error("cannot raise RLIMIT_NOFILE to " + std::to_string(needed) +
                         " for --concurrency " + std::to_string(concurrency));
  }
  return Status::Ok();
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// Keeps `concurrency` CheckRunners busy on one loop: each finished check frees its slot for
// the next one, so the load is closed-loop, as a daemon with a bounded worker pool would run.
class LoadDriver {
 public:
  LoadDriver(event_base* base, Resolver* dns, SSL_CTX* tls_context,
             std::vector<CheckOptions> options, const BenchOptions& bench)
      : base_(base),
        dns_(dns),
        tls_context_(tls_context),
        options_(std::move(options)),
        bench_(bench),
        slots_(static_cast<std::size_t>(bench.concurrency)),
        sampler_(event_new(base, -1, EV_PERSIST, &LoadDriver::OnSample, this)) {}

  // Runs until every launched check has reported.
  void Run() {
    fd_baseline_ = OpenFds();
    rss_before_kib_ = StatusFieldKib("VmRSS");
    const timeval every{0, static_cast<suseconds_t>(bench_.sample_interval * 1e6)};
    if (sampler_) event_add(sampler_.get(), &every);  // without it: no open-socket peak
    start_ = Clock::now();
    cpu_start_ = ProcessCpu();
    for (std::size_t slot = 0; slot < slots_.size() && MoreToLaunch(); ++slot) Launch(slot);
    if (in_flight_ > 0) event_base_dispatch(base_);
    cpu_end_ = ProcessCpu();
    end_ = Clock::now();
    if (sampler_) event_del(sampler_.get());
  }

  nlohmann::json Report() const;
  bool AllOk() const { return done_ > 0 && ok_ == done_; }

 private:
  static void OnSample(evutil_socket_t, short, void* arg) noexcept {
    static_cast<LoadDriver*>(arg)->Sample();
  }

  void Sample() { peak_open_fds_ = std::max(peak_open_fds_, OpenFds() - fd_baseline_); }

  bool MoreToLaunch() const {
    if (bench_.checks > 0 && launched_ >= bench_.checks) return false;
    if (bench_.duration > 0 && launched_ > 0) {
      return std::chrono::duration<double>(Clock::now() - start_).count() < bench_.duration;
    }
    return true;
  }

  void Launch(std::size_t slot) {
    CheckOptions options = options_[static_cast<std::size_t>(launched_) % options_.size()];
    if (bench_.resume) options.tls_session = last_session_;  // as the daemon's tls_resume
    slots_[slot].runner = std::make_unique<CheckRunner>(
        base_, dns_, tls_context_, std::move(options),
        [this, slot](CheckResult result) { OnDone(slot, std::move(result)); });
    slots_[slot].started = Clock::now();
    ++launched_;
    peak_in_flight_ = std::max(peak_in_flight_, ++in_flight_);
    slots_[slot].runner->Start();
  }

  void OnDone(std::size_t slot, CheckResult result) {
    Record(result, slots_[slot].started);
    slots_[slot].runner.reset();  // allowed inside the callback (check_runner.h)
    --in_flight_;
    if (MoreToLaunch()) {
      Launch(slot);
    } else if (in_flight_ == 0) {
      event_base_loopbreak(base_);
    }
  }

  void Record(const CheckResult& result, Clock::time_point started) {
    ++done_;
    NoteGreetedSpan(result, started);
    if (result.tls.established) ++tls_established_;
    if (result.tls.resumed) ++tls_resumed_;
    if (result.tls_session) last_session_ = result.tls_session;
    const CheckOutcome& o = result.outcome;
    if (o.success) {
      ++ok_;
      totals_.push_back(result.total_seconds);
      return;
    }
    const std::string key =
        std::string(FailureKindName(o.failure)) + " at " + std::string(PhaseName(o.phase));
    if (failures_[key]++ == 0) {
      failure_examples_[key] = Printable(o.reply ? o.reply->ToString() : o.detail, 300);
    }
  }

  void NoteGreetedSpan(const CheckResult& r, Clock::time_point started) {
    const auto seconds = [&r](Phase p) {
      return std::max(0.0, r.phase_seconds[static_cast<std::size_t>(p)]);
    };
    if (r.phase_seconds[static_cast<std::size_t>(Phase::kEhlo)] < 0) return;  // no greeting
    const double begin = std::chrono::duration<double>(started - start_).count();
    const double greeted =
        begin + seconds(Phase::kDns) + seconds(Phase::kConnect) + seconds(Phase::kBanner);
    greeted_spans_.emplace_back(greeted, begin + r.total_seconds);
  }

  long PeakGreeted() const {
    std::vector<std::pair<double, int>> edges;  // ends sort before begins at the same time
    for (const auto& [from, to] : greeted_spans_) {
      edges.emplace_back(from, 1);
      edges.emplace_back(to, -1);
    }
    std::sort(edges.begin(), edges.end());
    long open = 0, peak = 0;
    for (const auto& edge : edges) peak = std::max(peak, open += edge.second);
    return peak;
  }

  event_base* base_;
  Resolver* dns_;
  SSL_CTX* tls_context_;
  const std::vector<CheckOptions> options_;  // one per target
  const BenchOptions& bench_;
  struct Slot {
    std::unique_ptr<CheckRunner> runner;
    Clock::time_point started;
  };
  std::vector<Slot> slots_;
  EventPtr sampler_;

  long launched_ = 0, done_ = 0, ok_ = 0, tls_established_ = 0, tls_resumed_ = 0;
  SslSessionRef last_session_;
  long in_flight_ = 0, peak_in_flight_ = 0;
  long fd_baseline_ = 0, peak_open_fds_ = 0, rss_before_kib_ = 0;
  std::map<std::string, long> failures_;
  std::map<std::string, std::string> failure_examples_;
  std::vector<double> totals_;  // seconds per successful check
  // Per check that got its greeting: from the banner's arrival to the end of the check, in
  // seconds since the run started. The peak overlap shows how many sessions the server really
  // held open with us at once, which sockets merely connecting or queued would not.
  std::vector<std::pair<double, double>> greeted_spans_;
  Clock::time_point start_, end_;
  CpuTime cpu_start_, cpu_end_;
};

nlohmann::json LoadDriver::Report() const {
  const double wall = std::chrono::duration<double>(end_ - start_).count();
  const double user = cpu_end_.user - cpu_start_.user;
  const double system = cpu_end_.system - cpu_start_.system;
  std::vector<double> sorted = totals_;
  std::sort(sorted.begin(), sorted.end());
  const auto ms = [&sorted](double p) { return Percentile(sorted, p) * 1000; };
  return {
      {"tool", "mailpulse-probe"},
      {"tls", bench_.tls},
      {"concurrency", bench_.concurrency},
      {"checks", done_},
      {"ok", ok_},
      {"failed", done_ - ok_},
      {"all_ok", AllOk()},
      {"failures", failures_},
      {"failure_examples", failure_examples_},
      {"tls_established", tls_established_},
      {"tls_resumed", tls_resumed_},
      {"wall_seconds", wall},
      {"checks_per_second", wall > 0 ? static_cast<double>(done_) / wall : 0},
      {"cpu_user_seconds", user},
      {"cpu_system_seconds", system},
      {"cpu_us_per_check", done_ > 0 ? (user + system) / static_cast<double>(done_) * 1e6 : 0},
      {"loop_busy_share", wall > 0 ? (user + system) / wall : 0},
      {"rss_before_kib", rss_before_kib_},
      {"peak_rss_kib", StatusFieldKib("VmHWM")},
      {"peak_in_flight", peak_in_flight_},
      {"peak_open_fds", peak_open_fds_},
      {"peak_greeted_sessions", PeakGreeted()},
      {"latency_ms", {{"p50", ms(0.5)}, {"p90", ms(0.9)}, {"p99", ms(0.99)}, {"max", ms(1.0)}}},
  };
}

StatusOr<std::vector<CheckOptions>> PlanChecks(const BenchOptions& b) {
  std::vector<CheckOptions> plans;
  const bool tls = b.tls == "starttls";
  for (const std::string& text : b.targets) {
    StatusOr<Endpoint> target = ParseCheckTarget(text, 25);
    if (!target.ok()) return target.status();
    CheckOptions c;
    c.host = target->host;
    c.port = target->port;
    c.tls_name = b.tls_name;
    c.verify_certificate = !b.insecure;
    c.phase_timeout_seconds = c.overall_timeout_seconds = b.timeout;
    c.session.kind = tls ? CheckKind::kTls : CheckKind::kConnect;
    c.session.tls = tls ? TlsMode::kStartTls : TlsMode::kNone;
    c.session.helo_name = b.helo;
    plans.push_back(std::move(c));
  }
  return plans;
}

void AddOptions(CLI::App* app, BenchOptions* b) {
  app->add_option("targets", b->targets,
                  "HOST[:PORT] of the SMTP server (port 25 by default); several share the "
                  "checks round-robin")
      ->required();
  app->add_option("--tls", b->tls, "none (banner, EHLO, QUIT) or starttls (default none)")
      ->check(CLI::IsMember({"none", "starttls"}));
  CLI::Option* ca = app->add_option("--ca-file", b->ca_file, "Trust these CA certificates (PEM)");
  app->add_flag("--insecure", b->insecure, "Do not verify the server certificate")->excludes(ca);
  app->add_option("--tls-name", b->tls_name, "SNI and the name the certificate must carry");
  app->add_flag("--resume", b->resume,
                "Resume the TLS session of the last finished check (the daemon's tls_resume)");
  app->add_option("--helo", b->helo, "EHLO name (default bench.mailpulse.test)");
  app->add_option("--checks", b->checks, "Checks in all (with --duration: at most)")
      ->check(CLI::PositiveNumber);
  app->add_option("--duration", b->duration, "Launch new checks for S seconds, then drain")
      ->check(CLI::PositiveNumber);
  app->add_option("--concurrency", b->concurrency, "Checks in flight at once (default 1)")
      ->check(CLI::Range(1L, 1000000L));
  app->add_option("--timeout", b->timeout, "Per-check timeout in seconds (default 30)")
      ->check(CLI::PositiveNumber);
  app->add_option("--sample-interval", b->sample_interval,
                  "Seconds between samples of the open sockets (default 0.1)")
      ->check(CLI::Range(0.001, 0.999999));
}

void PrintHuman(const nlohmann::json& r) {
  std::fprintf(stderr,
               "probe_bench: %ld checks (%ld ok, %ld failed) at concurrency %ld in %.3f s: "
               "%.1f checks/s, %.1f us CPU per check, peak RSS %ld KiB, peak in flight %ld, "
               "peak open sockets %ld, peak greeted sessions %ld, p50 %.2f ms, p99 %.2f ms\n",
               r["checks"].get<long>(), r["ok"].get<long>(), r["failed"].get<long>(),
               r["concurrency"].get<long>(), r["wall_seconds"].get<double>(),
               r["checks_per_second"].get<double>(), r["cpu_us_per_check"].get<double>(),
               r["peak_rss_kib"].get<long>(), r["peak_in_flight"].get<long>(),
               r["peak_open_fds"].get<long>(), r["peak_greeted_sessions"].get<long>(),
               r["latency_ms"]["p50"].get<double>(), r["latency_ms"]["p99"].get<double>());
  for (const auto& [kind, count] : r["failures"].items()) {
    std::fprintf(stderr, "probe_bench: FAILED %ld x %s: %s\n", count.get<long>(), kind.c_str(),
                 r["failure_examples"][kind].get<std::string>().c_str());
  }
}

int Main(int argc, char** argv) {
  CLI::App app("probe_bench: many mailpulse-probe checks on one event loop");
  BenchOptions bench;
  AddOptions(&app, &bench);
  CLI11_PARSE(app, argc, argv);
  if (bench.checks == 0 && bench.duration == 0) {
    std::fprintf(stderr, "probe_bench: give --checks N or --duration S\n");
    return 2;
  }
  LogInit("probe_bench", LogTarget::kStderr, LogLevel::kWarning);
  std::signal(SIGPIPE, SIG_IGN);  // a server closing first must not kill the driver
  StatusOr<std::vector<CheckOptions>> options = PlanChecks(bench);
  Status limit = options.ok() ? RaiseFdLimit(bench.concurrency) : options.status();
  EventBasePtr base(event_base_new());
  if (!limit.ok() || !base) {
    std::fprintf(stderr, "probe_bench: %s\n", base ? limit.message().c_str() : "no event base");
    return 2;
  }
  SslCtxPtr tls_context;  // built once for every check, as a daemon does
  if (bench.tls == "starttls") {
    StatusOr<SslCtxPtr> ctx = NewClientTlsContext(bench.ca_file, !bench.insecure);
    if (!ctx.ok()) {
      std::fprintf(stderr, "probe_bench: %s\n", ctx.status().message().c_str());
      return 2;
    }
    tls_context = std::move(*ctx);
  }
  StatusOr<std::unique_ptr<Resolver>> dns = Resolver::Create(base.get(), {});
  if (!dns.ok()) {
    std::fprintf(stderr, "probe_bench: %s\n", dns.status().message().c_str());
    return 2;
  }
  nlohmann::json report;
  bool all_ok = false;
  {
    LoadDriver driver(base.get(), dns->get(), tls_context.get(), *options, bench);
    driver.Run();
    report = driver.Report();
    all_ok = driver.AllOk();
  }
  std::printf("%s\n", report.dump().c_str());
  std::fflush(stdout);
  PrintHuman(report);
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace mailpulse

int main(int argc, char** argv) { return mailpulse::Main(argc, argv); }
