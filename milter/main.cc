// mailpulse-milter: counts live traffic and rejects from inside the MTA's mail path.
// Start-up order matters: parse config, bind every socket (milter and /metrics) while still
// root, fix the unix socket's mode and group, drop to the unprivileged user, then run
// libmilter's loop on the main thread and libevent (/metrics, event socket) on a second one.
#include <event2/event.h>
#include <event2/thread.h>
#include <libmilter/mfapi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>
#include <CLI/CLI.hpp>
#include <chrono>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "milter/core/client_classifier.h"
#include "milter/core/traffic_counters.h"
#include "milter/listen_socket.h"
#include "milter/milter_callbacks.h"
#include "milter/queue_watch.h"
#include "milter/spike_watch.h"
#include "milter/top_command.h"
#include "shared/clock.h"
#include "shared/config.h"
#include "shared/endpoint.h"
#include "shared/frame_codec.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/metrics.h"
#include "shared/net/event_outbox.h"
#include "shared/net/event_sender.h"
#include "shared/net/libevent_log.h"
#include "shared/net/metrics_http.h"
#include "shared/net/privileges.h"
#include "shared/net/tls.h"
#include "shared/probe_token.h"
#include "shared/secret_file.h"

namespace mailpulse {
namespace {

constexpr char kDefaultConfigPath[] = "/etc/mailpulse/mailpulse.toml";
constexpr char kDefaultUser[] = "mailpulse";
constexpr int kExitConfig = 78;  // EX_CONFIG, as sysexits(3)

struct Options {
  std::string config_path;
  bool check_config = false;
  bool dump_config = false;
  bool foreground = false;
  std::string socket;
  std::string metrics_listen;
};

// Everything the config must make sense of before the daemon starts, checked in one place so
// --check-config and start-up agree.
struct Settings {
  Endpoint socket;
  std::optional<Endpoint> metrics_listen;
  std::optional<Endpoint> event_socket;
  EventSenderOptions event_options;
  std::optional<ProbeKey> probe_key;  // read while still root
  ClientClassifier classifier;
  SpikeWatchSettings spikes;
  QueueWatchSettings queues;
};

// The TLS side of a tls:HOST:PORT event socket: the token to present and how to verify the
// probe. Errors name where the key came from.
Status EventTlsOptions(const Config& config, const Endpoint& where, EventSenderOptions* o) {
  o->max_queued = static_cast<std::size_t>(config.GetInt("milter.event_queue_size"));
  if (!where.tls) return Status::Ok();
  const auto fail = [&](const std::string& key, const std::string& message) {
    return Status::Error(config.Where(key) + ": " + key + ": " + message);
  };
  const std::string& token_file = config.GetString("milter.event_token_file");
  if (token_file.empty()) return fail("milter.event_token_file", "a tls: event socket needs it");
  StatusOr<std::string> token = ReadSecretFile(token_file, "token file");
  if (!token.ok()) return fail("milter.event_token_file", token.status().message());
  o->token = std::move(*token);
  StatusOr<SslCtxPtr> ctx = NewClientTlsContext(config.GetString("milter.event_ca_file"), true);
  if (!ctx.ok()) return fail("milter.event_ca_file", ctx.status().message());
  o->tls_context = std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free);
  o->tls_name = config.GetString("milter.event_tls_name");
  return Status::Ok();
}

StatusOr<Settings> Validate(const Config& config) {
  // Errors name where the value came from (FILE:LINE, command line or default).
  auto fail = [&](const std::string& key, const Status& s) {
    return Status::Error(config.Where(key) + ": " + key + ": " + s.message());
  };
  StatusOr<Endpoint> socket = ParseMilterSocketSpec(config.GetString("milter.socket"));
  if (!socket.ok()) return fail("milter.socket", socket.status());
  StatusOr<ClientClassifier> classifier =
      ClientClassifier::Create(config.GetStringList("milter.trusted_networks"));
  if (!classifier.ok()) return fail("milter.trusted_networks", classifier.status());
  Settings s{*socket, std::nullopt, std::nullopt, {}, std::nullopt, std::move(*classifier), {}, {}};
  if (const std::string& m = config.GetString("milter.metrics_listen"); !m.empty()) {
    StatusOr<Endpoint> e = ParseEndpoint(m);
    if (!e.ok()) return fail("milter.metrics_listen", e.status());
    s.metrics_listen = *e;
  }
  if (const std::string& ev = config.GetString("milter.event_socket"); !ev.empty()) {
    StatusOr<Endpoint> e = ParseEndpoint(ev);
    if (!e.ok()) return fail("milter.event_socket", e.status());
    s.event_socket = *e;
    if (Status st = EventTlsOptions(config, *e, &s.event_options); !st.ok()) return st;
  }
  if (const std::string& key_file = config.GetString("milter.probe_key_file"); !key_file.empty()) {
    StatusOr<ProbeKey> key = ProbeKey::Load(key_file);
    if (!key.ok()) return fail("milter.probe_key_file", key.status());
    s.probe_key = std::move(*key);
  }
  StatusOr<SpikeWatchSettings> spikes = SpikeWatchSettingsFrom(config);
  if (!spikes.ok()) return spikes.status();
  s.spikes = std::move(*spikes);
  StatusOr<QueueWatchSettings> queues = QueueWatchSettingsFrom(config);
  if (!queues.ok()) return queues.status();
  s.queues = std::move(*queues);
  if (config.GetSeconds("milter.snapshot_interval") <= 0) {
    return fail("milter.snapshot_interval", Status::Error("must be positive"));
  }
  StatusOr<LogLevel> level = ParseLogLevel(config.GetString("log.level"));
  if (!level.ok()) return fail("log.level", level.status());
  StatusOr<LogTarget> target = ParseLogTarget(config.GetString("log.target"));
  if (!target.ok()) return fail("log.target", target.status());
  return s;
}

// The libevent side: /metrics and the periodic traffic snapshot to the event socket.
class EventLoop {
 public:
  EventLoop() : base_(event_base_new()) {}
  event_base* base() { return base_.get(); }
  void Start() {
    thread_ = std::thread([this] { event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  void Stop() {
    event_base_loopbreak(base_.get());
    if (thread_.joinable()) thread_.join();
  }

 private:
  EventBasePtr base_;
  std::thread thread_;
};

struct SnapshotTimer {
  TrafficCounters* counters;
  const Counter* events_dropped;
  EventSender* sender;
  std::string source;
  std::int64_t start_us;
  EventPtr timer;

  static void Fire(evutil_socket_t, short, void* self) noexcept {
    auto* t = static_cast<SnapshotTimer*>(self);
    try {
      proto::Event event;
      proto::TrafficSnapshot* snap = event.mutable_traffic_snapshot();
      t->counters->Snapshot(snap);
      snap->set_source(t->source);
      snap->set_events_dropped(t->events_dropped->Value());
      snap->set_start_unix_us(t->start_us);
      snap->set_time_unix_us(UnixMicros());
      std::string frame;
      AppendEventFrame(event, &frame);
      t->sender->Enqueue(std::move(frame));
    } catch (...) {
      MP_LOG_ERROR("event socket: could not build a traffic snapshot");
    }
  }
};

// Ticks the spike detector once a second on the event thread: ends, pending starts, reports.
struct SpikeTimer {
  SpikeWatch* watch;
  EventPtr timer;

  static void Fire(evutil_socket_t, short, void* self) noexcept {
    try {
      static_cast<SpikeTimer*>(self)->watch->Tick(MonotonicSeconds(), UnixMicros());
    } catch (...) {
      MP_LOG_ERROR("spike detection: could not evaluate the outbound rates");
    }
  }
};

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// Process metrics of the milter itself.
struct ProcessMetrics {
  Counter* events_dropped;
  Counter* events_sent;
};

ProcessMetrics RegisterProcessMetrics(MetricsRegistry* registry, const std::string& hop) {
  registry->AddGauge("mailpulse_milter_up", "1 while the milter is running.").WithLabels({}).Set(1);
  registry
      ->AddGauge("mailpulse_milter_build_info", "Build and hop of this milter (always 1).",
                 {"version", "hop"})
      .WithLabels({MAILPULSE_VERSION, hop})
      .Set(1);
  registry->AddGauge("mailpulse_milter_start_time_seconds", "Unix time the milter started.")
      .WithLabels({})
      .Set(static_cast<double>(UnixMicros()) / 1e6);
  return {
      &registry
           ->AddCounter("mailpulse_milter_events_dropped_total",
                        "Events dropped because the event socket was unreachable or slow.")
           .WithLabels({}),
      &registry
           ->AddCounter("mailpulse_milter_events_sent_total", "Events handed to the event socket.")
           .WithLabels({})};
}

// Lower-cased, without angle brackets: how ProbeInspector compares addresses.
std::vector<std::string> Addresses(const std::vector<std::string>& list) {
  std::vector<std::string> out;
  for (std::string a : list) {
    if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
    for (char& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(std::move(a));
  }
  return out;
}

ProbePolicy MakeProbePolicy(const Config& config, const Settings& settings, const std::string& hop,
                            ReplayGuard* replay) {
  ProbePolicy p;
  p.key = settings.probe_key ? &*settings.probe_key : nullptr;
  p.limits.max_age_us = static_cast<std::int64_t>(config.GetSeconds("milter.probe_max_age") * 1e6);
  p.limits.max_future_us =
      static_cast<std::int64_t>(config.GetSeconds("milter.probe_max_clock_skew") * 1e6);
  p.replay = replay;
  p.hop = hop;
  p.sinks = Addresses(config.GetStringList("milter.probe_sinks"));
  p.return_paths = Addresses(config.GetStringList("milter.probe_return_paths"));
  p.discard_at_sinks = config.GetBool("milter.probe_discard");
  p.strip_invalid = config.GetBool("milter.probe_strip_invalid");
  return p;
}

ProbeCounters RegisterProbeCounters(MetricsRegistry* registry) {
  ProbeCounters c;
  c.tokens_invalid = &registry->AddCounter(
      "mailpulse_milter_probe_tokens_invalid_total",
      "X-Mailpulse-Probe tokens that did not verify, by reason; such messages are not probes.",
      {"reason"});
  c.sightings = &registry
                     ->AddCounter("mailpulse_milter_probe_sightings_total",
                                  "Probe messages with a valid token seen and stamped at this hop.")
                     .WithLabels({});
  c.deliveries = &registry
                      ->AddCounter("mailpulse_milter_probe_deliveries_total",
                                   "Of those, probe messages to sink addresses only (delivered).")
                      .WithLabels({});
  c.bounces = &registry
                   ->AddCounter("mailpulse_milter_probe_bounces_total",
                                "DSNs returning a probe message with a valid token.")
                   .WithLabels({});
  return c;
}

// Opens the milter socket through libmilter and fixes what libmilter leaves undone.
Status OpenMilterSocket(const Config& config, const Settings& s, const smfiDesc& desc,
                        const std::optional<RunAs>& run_as) {
  const std::string spec = config.GetString("milter.socket");
  if (s.socket.kind == Endpoint::Kind::kUnix) {
    if (Status st = PrepareUnixSocketPath(s.socket.path); !st.ok()) return st;
  }
  smfiDesc d = desc;
  if (smfi_register(d) != MI_SUCCESS) return Status::Error("smfi_register failed");
  if (smfi_setconn(const_cast<char*>(spec.c_str())) != MI_SUCCESS) {
    return Status::Error("smfi_setconn " + spec + " failed");
  }
  smfi_settimeout(static_cast<int>(config.GetSeconds("milter.timeout")));
  // The socket is created group-accessible; SecureUnixSocket then narrows it to 0660.
  const mode_t old_umask = umask(0007);
  const int rc = smfi_opensocket(true);
  umask(old_umask);
  if (rc != MI_SUCCESS) return Status::Error("cannot listen on " + spec);
  if (s.socket.kind == Endpoint::Kind::kTcp) return SetNoDelayOnListeners(s.socket.port);
  uid_t owner = run_as ? run_as->uid : getuid();
  gid_t group = run_as ? run_as->gid : getgid();
  if (const std::string& g = config.GetString("milter.socket_group"); !g.empty()) {
    StatusOr<gid_t> gid = LookUpGroup(g);
    if (!gid.ok()) return Status::Error("milter.socket_group: " + gid.status().message());
    group = *gid;
  }
  if (getuid() != 0) owner = getuid();  // only root may give the socket away
  return SecureUnixSocket(s.socket.path, owner, group);
}

int Serve(const Config& config, const Settings& settings, bool foreground) {
  std::optional<RunAs> run_as;
  if (getuid() == 0) {
    bool fell_back = false;
    StatusOr<RunAs> r =
        ChooseRunAs(config.GetString("milter.user"), kDefaultUser, "milter.user", &fell_back);
    if (!r.ok()) {
      MP_LOG_ERROR("%s", r.status().message().c_str());
      return kExitConfig;
    }
    if (fell_back) {
      // Runs out of the box before the operator has created the account; never as root.
      MP_LOG_WARNING(
          "user '%s' does not exist; running as 'nobody' (create it, or set "
          "milter.user)",
          kDefaultUser);
    }
    run_as = *r;
  }
  evthread_use_pthreads();
  MetricsRegistry registry;
  std::string hop = config.GetString("milter.hop_name");
  if (hop.empty()) hop = HostName();
  const ProcessMetrics process = RegisterProcessMetrics(&registry, hop);
  TrafficCounters counters(&registry);
  ReplayGuard replay;
  const ProbePolicy policy = MakeProbePolicy(config, settings, hop, &replay);
  MilterContext context{&counters, &settings.classifier, &policy, RegisterProbeCounters(&registry),
                        nullptr};

  const bool edits_headers = settings.probe_key.has_value();
  if (Status s = OpenMilterSocket(config, settings, MakeFilterDescription(edits_headers), run_as);
      !s.ok()) {
    MP_LOG_ERROR("milter socket: %s", s.message().c_str());
    return 1;
  }
  EventLoop loop;
  std::unique_ptr<SpikeWatch> spikes;  // made below, before the loop runs
  std::unique_ptr<MetricsHttpServer> http;
  if (settings.metrics_listen) {
    auto top = [&spikes](std::string_view path) -> std::optional<std::string> {
      if (path != "/top" || !spikes) return std::nullopt;
      return spikes->TopJson(20, MonotonicSeconds());
    };
    auto h =
        MetricsHttpServer::Create(loop.base(), *settings.metrics_listen, &registry, nullptr, top);
    if (!h.ok()) {
      MP_LOG_ERROR("metrics: %s", h.status().message().c_str());
      return 1;
    }
    http = std::move(*h);
  }
  if (run_as) {
    if (Status s = DropPrivileges(*run_as); !s.ok()) {
      MP_LOG_ERROR("cannot drop privileges to %s: %s", run_as->user.c_str(), s.message().c_str());
      return 1;
    }
  }
  if (!foreground && daemon(0, 0) != 0) {
    MP_LOG_ERROR("cannot detach: %s", std::strerror(errno));
    return 1;
  }
  std::unique_ptr<EventSender> sender;
  std::unique_ptr<EventOutbox> outbox;
  SnapshotTimer snapshots{&counters, process.events_dropped, nullptr, hop, UnixMicros(), nullptr};
  if (settings.event_socket) {
    EventSenderOptions options = settings.event_options;
    options.hello_name = hop;
    sender = std::make_unique<EventSender>(loop.base(), *settings.event_socket, std::move(options),
                                           process.events_dropped, process.events_sent);
    snapshots.sender = sender.get();
    outbox = std::make_unique<EventOutbox>(
        loop.base(), sender.get(),
        static_cast<std::size_t>(config.GetInt("milter.event_queue_size")), process.events_dropped);
    context.post_event = [box = outbox.get()](std::string frame) { box->Post(std::move(frame)); };
    snapshots.timer.reset(event_new(loop.base(), -1, EV_PERSIST, &SnapshotTimer::Fire, &snapshots));
    const double interval = config.GetSeconds("milter.snapshot_interval");
    const timeval tv = ToTimeval(interval);
    event_add(snapshots.timer.get(), &tv);
  }
  SpikeTimer spike_timer{nullptr, nullptr};
  if (config.GetBool("milter.spike_detection")) {
    spikes = std::make_unique<SpikeWatch>(settings.spikes, &registry, hop, context.post_event,
                                          MonotonicSeconds());
    context.spikes = spikes.get();
    spike_timer.watch = spikes.get();
    spike_timer.timer.reset(
        event_new(loop.base(), -1, EV_PERSIST, &SpikeTimer::Fire, &spike_timer));
    const timeval second = {1, 0};
    event_add(spike_timer.timer.get(), &second);
  }
  // After daemon(): a thread does not survive the fork.
  QueueWatch queues(settings.queues, &registry, hop, context.post_event);
  if (!queues.empty()) queues.Start();
  SetMilterContext(&context);
  // libmilter waits for SIGTERM/SIGINT/SIGHUP with sigwait in its own thread; the event
  // thread must not take them first (their default action would kill the process).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  loop.Start();
  MP_LOG_INFO("mailpulse-milter %s listening on %s, metrics on %s, hop %s", MAILPULSE_VERSION,
              config.GetString("milter.socket").c_str(),
              settings.metrics_listen ? settings.metrics_listen->ToString().c_str() : "(off)",
              hop.c_str());
  const int rc = smfi_main();
  MP_LOG_INFO("mailpulse-milter stopping");
  loop.Stop();
  // smfi_main returns without joining libmilter's session threads, which may still be inside a
  // callback using the counters above. Leave without running any destructor (ours or static
  // ones) so nothing is freed under them; the kernel closes every socket.
  std::fflush(nullptr);
  std::_Exit(rc == MI_SUCCESS ? 0 : 1);
}

int Run(const Options& opts) {
  // With no --config, the default file is read if it exists; otherwise built-in defaults.
  std::string path = opts.config_path;
  if (path.empty() && access(kDefaultConfigPath, F_OK) == 0) path = kDefaultConfigPath;
  StatusOr<Config> loaded =
      path.empty() ? StatusOr<Config>(Config::Defaults()) : Config::Load(path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "mailpulse-milter: %s\n", loaded.status().message().c_str());
    return kExitConfig;
  }
  Config config = std::move(*loaded);
  const std::string origin = path.empty() ? "(built-in defaults)" : path;
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"milter.socket", opts.socket},
        {"milter.metrics_listen", opts.metrics_listen}}) {
    if (value.empty()) continue;
    if (Status s = config.Set(key, value); !s.ok()) {
      std::fprintf(stderr, "mailpulse-milter: --%s: %s\n", key.c_str() + 7, s.message().c_str());
      return kExitConfig;
    }
  }
  if (opts.foreground) (void)config.Set("log.target", "stderr");
  StatusOr<Settings> settings = Validate(config);
  if (!settings.ok()) {
    std::fprintf(stderr, "mailpulse-milter: %s\n", settings.status().message().c_str());
    return kExitConfig;
  }
  if (opts.dump_config) {
    std::fputs(config.Dump().c_str(), stdout);
    return 0;
  }
  if (opts.check_config) {
    std::printf("mailpulse-milter: configuration %s is valid\n", origin.c_str());
    return 0;
  }
  LogInit("mailpulse-milter", *ParseLogTarget(config.GetString("log.target")),
          *ParseLogLevel(config.GetString("log.level")));
  RouteLibeventLogs();
  return Serve(config, *settings, opts.foreground);
}

}  // namespace
}  // namespace mailpulse

int main(int argc, char** argv) {
  mailpulse::Options opts;
  CLI::App app{"mailpulse-milter: live SMTP traffic and reject counts from inside the MTA"};
  app.add_option("--config", opts.config_path,
                 "TOML config file (default /etc/mailpulse/mailpulse.toml if it exists)");
  app.add_flag("--check-config", opts.check_config, "Validate the configuration and exit");
  app.add_flag("--dump-config", opts.dump_config, "Print the effective configuration and exit");
  app.add_flag("--foreground", opts.foreground, "Do not detach; log to stderr");
  app.add_option("--socket", opts.socket,
                 "Milter socket, overrides milter.socket (unix:/path or inet:PORT@HOST)");
  app.add_option("--metrics-listen", opts.metrics_listen,
                 "ADDR:PORT for /metrics, overrides milter.metrics_listen");
  app.set_version_flag("--version", std::string("mailpulse-milter ") + MAILPULSE_VERSION);
  mailpulse::TopOptions top_options;
  CLI::App* top = mailpulse::AddTopCommand(&app, &top_options);
  CLI11_PARSE(app, argc, argv);
  if (top->parsed()) return mailpulse::RunTopCommand(top_options);
  return mailpulse::Run(opts);
}
