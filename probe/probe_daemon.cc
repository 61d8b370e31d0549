#include "probe/probe_daemon.h"

#include <event2/event.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <exception>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "probe/alert_center.h"
#include "probe/check_runner.h"
#include "probe/check_scheduler.h"
#include "probe/event_server.h"
#include "probe/probe_metrics.h"
#include "probe/probe_result.h"
#include "probe/resolver.h"
#include "probe/roundtrip_tracker.h"
#include "probe/tls_client.h"
#include "shared/clock.h"
#include "shared/frame_codec.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/net/event_sender.h"
#include "shared/net/metrics_http.h"
#include "shared/net/tls.h"

namespace mailpulse {
namespace {

// Probe results held while probe.report_to is unreachable; older ones are dropped and counted.
constexpr std::size_t kReportQueueSize = 1024;

const char* EventKind(const proto::Event& event) {
  switch (event.kind_case()) {
    case proto::Event::kTrafficSnapshot:
      return "traffic_snapshot";
    case proto::Event::kProbeResult:
      return "probe_result";
    case proto::Event::kHopSighting:
      return "hop_sighting";
    case proto::Event::kProbeBounce:
      return "probe_bounce";
    case proto::Event::kPeerHello:
      return "peer_hello";
    case proto::Event::kOutboundSpike:
      return "outbound_spike";
    case proto::Event::kQueueStatus:
      return "queue_status";
    default:
      return "unknown";
  }
}

// Whether the first hop took the message: its reply to the message data was 2xx (the check
// may still fail after that, at QUIT).
bool Accepted(const CheckResult& r) {
  return r.outcome.reply_codes[static_cast<std::size_t>(Phase::kEndOfData)] / 100 == 2;
}

// When the message left the probe: the start of the end_of_data phase (the data going out).
// The first hop stamps its end of message before it answers, so the answer is too late a
// start for its latency.
std::int64_t SentAt(std::int64_t start_unix_us, const CheckResult& r) {
  double before = 0;  // every phase but the two that follow the data
  for (int i = 0; i < kPhaseCount; ++i) {
    const auto p = static_cast<Phase>(i);
    if (p == Phase::kEndOfData || p == Phase::kQuit) continue;
    if (r.phase_seconds[static_cast<std::size_t>(i)] > 0) {
      before += r.phase_seconds[static_cast<std::size_t>(i)];
    }
  }
  return start_unix_us + static_cast<std::int64_t>(before * 1e6);
}

// One TLS context per (CA file, verify) pair: loading the system store costs milliseconds,
// so it is done once per configuration, not per check.
using TlsContexts = std::map<std::pair<std::string, bool>, std::shared_ptr<SSL_CTX>>;

StatusOr<TlsContexts> BuildTlsContexts(const std::vector<ProbeTarget>& targets) {
  TlsContexts contexts;
  for (const ProbeTarget& t : targets) {
    if (t.imap) {
      const auto key = std::make_pair(t.imap->ca_file, t.imap->options.verify_certificate);
      if (!contexts.contains(key)) {
        StatusOr<SslCtxPtr> ctx = NewClientTlsContext(key.first, key.second);
        if (!ctx.ok()) {
          return Status::Error(t.where + ": target " + t.name +
                               ": IMAP: " + ctx.status().message());
        }
        contexts[key] = std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free);
      }
    }
    if (t.plan.options.session.tls == TlsMode::kNone) continue;
    const auto key = std::make_pair(t.plan.ca_file, t.plan.options.verify_certificate);
    if (contexts.contains(key)) continue;
    StatusOr<SslCtxPtr> ctx = NewClientTlsContext(key.first, key.second);
    if (!ctx.ok())
      return Status::Error(t.where + ": target " + t.name + ": " + ctx.status().message());
    contexts[key] = std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free);
  }
  return contexts;
}

}  // namespace

class ProbeDaemon::Impl {
 public:
  Impl(std::string config_path, ProbeSettings settings)
      : config_path_(std::move(config_path)),
        settings_(std::move(settings)),
        rng_(std::random_device{}()),
        scheduler_(settings_.max_concurrent_checks, settings_.jitter_fraction,
                   [this] { return std::uniform_real_distribution<double>(0, 1)(rng_); }) {}
  ~Impl() { running_.clear(); }

  Status Init();
  Status DropPrivileges(const RunAs& run_as);
  Status AfterFork();
  int Run();

 private:
  // What tls_resume remembers of a target between checks.
  struct TlsMemory {
    SslSessionRef session;
    double full_handshake_at = 0;  // monotonic seconds
  };

  struct RunningCheck {
    ProbeTarget target;  // the settings it started with; a reload does not touch them
    std::shared_ptr<SSL_CTX> tls;
    std::int64_t start_unix_us = 0;
    std::string probe_id;
    std::unique_ptr<CheckRunner> runner;
  };

  Status InitSockets();
  void ApplyTargets(std::vector<ProbeTarget> targets, TlsContexts contexts);
  void Reload();
  void ArmWakeTimer();
  void OnWake();
  void StartCheck(const CheckScheduler::DueCheck& due);
  void OnCheckDone(const std::string& name, CheckResult result);
  void RememberTlsSession(const std::string& name, const ProbeTarget& target,
                          const CheckResult& result);
  void HandleEvent(const std::string& peer, const proto::Event& event);
  static void OnSignal(evutil_socket_t sig, short, void* arg) noexcept;
  static void OnWakeTimer(evutil_socket_t, short, void* arg) noexcept;
  template <typename F>
  void Guard(const char* what, F&& f) noexcept;

  // Declaration order is destruction order in reverse: checks go first, the loop last.
  std::string config_path_;
  ProbeSettings settings_;
  EventBasePtr base_;
  std::unique_ptr<Resolver> resolver_;
  MetricsRegistry registry_;
  std::unique_ptr<ProbeMetrics> metrics_;
  std::unique_ptr<MetricsHttpServer> http_;
  std::unique_ptr<EventServer> events_;
  std::unique_ptr<EventServer> tls_events_;
  std::unique_ptr<EventSender> report_;
  std::unique_ptr<RoundTripTracker> roundtrip_;
  std::unique_ptr<AlertCenter> alerts_;
  EventPtr wake_;
  std::vector<EventPtr> signals_;
  std::mt19937_64 rng_;
  CheckScheduler scheduler_;
  std::map<std::string, ProbeTarget> targets_;
  TlsContexts tls_;
  std::map<std::string, TlsMemory> tls_memory_;
  std::map<std::string, std::unique_ptr<RunningCheck>> running_;
};

template <typename F>
void ProbeDaemon::Impl::Guard(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    MP_LOG_ERROR("%s: %s", what, e.what());
  } catch (...) {
    MP_LOG_ERROR("%s: unknown exception", what);
  }
}

Status ProbeDaemon::Impl::Init() {
  base_.reset(event_base_new());
  if (!base_) return Status::Error("event_base_new failed");
  StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(base_.get(), settings_.resolvers);
  if (!resolver.ok()) return Status::Error("probe.resolvers: " + resolver.status().message());
  resolver_ = std::move(*resolver);
  metrics_ = std::make_unique<ProbeMetrics>(&registry_, settings_.name);
  Correlator::Options journeys;
  journeys.probe_name = settings_.name;
  journeys.lost_after_seconds = settings_.roundtrip_deadline_seconds;
  roundtrip_ = std::make_unique<RoundTripTracker>(base_.get(), resolver_.get(), &registry_,
                                                  std::move(journeys));
  StatusOr<TlsContexts> contexts = BuildTlsContexts(settings_.targets);
  if (!contexts.ok()) return contexts.status();
  alerts_ = std::make_unique<AlertCenter>(base_.get(), resolver_.get(), &registry_, settings_.name,
                                          settings_.alert_state_file);
  if (Status s = alerts_->Configure(settings_.alerts); !s.ok()) return s;
  alerts_->LoadState();
  alerts_->Start();
  roundtrip_->SetJourneyListener([this](const Journey& j) { alerts_->OnJourney(j); });
  if (Status s = InitSockets(); !s.ok()) return s;
  wake_.reset(evtimer_new(base_.get(), &Impl::OnWakeTimer, this));
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    signals_.emplace_back(evsignal_new(base_.get(), sig, &Impl::OnSignal, this));
    evsignal_add(signals_.back().get(), nullptr);
  }
  ApplyTargets(settings_.targets, std::move(*contexts));
  return Status::Ok();
}

Status ProbeDaemon::Impl::InitSockets() {
  if (settings_.metrics_listen) {
    auto http = MetricsHttpServer::Create(
        base_.get(), *settings_.metrics_listen, &registry_,
        [this] {
          metrics_->SetEventPeers((events_ ? events_->peers() : 0) +
                                  (tls_events_ ? tls_events_->peers() : 0));
        },
        [this](std::string_view path) {
          if (std::optional<std::string> alerts = alerts_->Get(path)) return alerts;
          return roundtrip_->JourneysJson(path);
        },
        [this](std::string_view path, std::string_view body) { return alerts_->Post(path, body); });
    if (!http.ok()) return http.status();
    http_ = std::move(*http);
  }
  if (settings_.event_socket) {
    if (settings_.event_socket->kind == Endpoint::Kind::kUnix) {
      if (Status s = PrepareUnixSocketPath(settings_.event_socket->path); !s.ok()) return s;
    }
    auto server = EventServer::Create(
        base_.get(), *settings_.event_socket,
        [this](const std::string& peer, const proto::Event& event) { HandleEvent(peer, event); },
        metrics_->event_peers_dropped());
    if (!server.ok()) return server.status();
    events_ = std::move(*server);
  }
  if (settings_.event_listen_tls) {
    StatusOr<SslCtxPtr> ctx =
        NewServerTlsContext(settings_.event_tls_cert_file, settings_.event_tls_key_file);
    if (!ctx.ok()) return Status::Error("probe.event_listen_tls: " + ctx.status().message());
    const EventServerTls tls{std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free),
                             settings_.event_token};
    auto server = EventServer::Create(
        base_.get(), *settings_.event_listen_tls,
        [this](const std::string& peer, const proto::Event& event) { HandleEvent(peer, event); },
        metrics_->event_peers_dropped(), &tls);
    if (!server.ok()) return server.status();
    tls_events_ = std::move(*server);
  }
  if (settings_.report_to) {
    EventSenderOptions options;
    options.max_queued = kReportQueueSize;
    options.hello_name = settings_.name;
    if (settings_.report_to->tls) {
      StatusOr<SslCtxPtr> ctx = NewClientTlsContext(settings_.event_ca_file, true);
      if (!ctx.ok()) return Status::Error("probe.event_ca_file: " + ctx.status().message());
      options.tls_context = std::shared_ptr<SSL_CTX>(ctx->release(), SSL_CTX_free);
      options.token = settings_.event_token;
    }
    report_ = std::make_unique<EventSender>(base_.get(), *settings_.report_to, std::move(options),
                                            metrics_->report_dropped(), metrics_->report_sent());
  }
  return Status::Ok();
}

Status ProbeDaemon::Impl::DropPrivileges(const RunAs& run_as) {
  if (settings_.event_socket && settings_.event_socket->kind == Endpoint::Kind::kUnix) {
    gid_t group = run_as.gid;
    if (!settings_.event_socket_group.empty()) {
      StatusOr<gid_t> gid = LookUpGroup(settings_.event_socket_group);
      if (!gid.ok()) return Status::Error("probe.event_socket_group: " + gid.status().message());
      group = *gid;
    }
    if (Status s = SecureUnixSocket(settings_.event_socket->path, run_as.uid, group); !s.ok()) {
      return s;
    }
  }
  return mailpulse::DropPrivileges(run_as);
}

Status ProbeDaemon::Impl::AfterFork() {
  if (event_reinit(base_.get()) != 0) return Status::Error("event_reinit failed after fork");
  return Status::Ok();
}

int ProbeDaemon::Impl::Run() {
  MP_LOG_INFO("mailpulse-probe %s: %zu targets, metrics on %s, event socket %s", MAILPULSE_VERSION,
              targets_.size(),
              settings_.metrics_listen ? settings_.metrics_listen->ToString().c_str() : "(off)",
              settings_.event_socket ? settings_.event_socket->ToString().c_str() : "(off)");
  event_base_dispatch(base_.get());
  MP_LOG_INFO("mailpulse-probe stopping; %zu checks in flight abandoned", running_.size());
  return 0;
}

void ProbeDaemon::Impl::ApplyTargets(std::vector<ProbeTarget> targets, TlsContexts contexts) {
  std::map<std::string, ProbeTarget> next;
  std::vector<CheckScheduler::Target> schedule;
  for (ProbeTarget& t : targets) {
    schedule.push_back({t.name, t.interval_seconds});
    std::string name = t.name;
    next.emplace(std::move(name), std::move(t));
  }
  for (const auto& [name, old] : targets_) {
    if (next.contains(name)) continue;
    metrics_->ForgetTarget(name);
    roundtrip_->ForgetTarget(name);
    if (running_.erase(name) > 0)
      MP_LOG_INFO("target %s removed; its check abandoned", name.c_str());
  }
  targets_ = std::move(next);
  tls_ = std::move(contexts);
  // A stored session carries the verdict of its context and name: new settings, new sessions.
  tls_memory_.clear();
  scheduler_.SetLimits(settings_.max_concurrent_checks, settings_.jitter_fraction);
  scheduler_.SetTargets(schedule, MonotonicSeconds());
  metrics_->SetTargets(targets_.size());
  metrics_->SetRunning(running_.size());
  ArmWakeTimer();
}

void ProbeDaemon::Impl::Reload() {
  const double now_unix = static_cast<double>(UnixMicros()) / 1e6;
  if (config_path_.empty()) {
    MP_LOG_INFO("SIGHUP: no configuration file to reread (running on built-in defaults)");
    return;
  }
  StatusOr<Config> config = Config::Load(config_path_);
  StatusOr<ProbeSettings> loaded =
      config.ok() ? LoadProbeSettings(*config) : StatusOr<ProbeSettings>(config.status());
  StatusOr<TlsContexts> contexts =
      loaded.ok() ? BuildTlsContexts(loaded->targets) : StatusOr<TlsContexts>(loaded.status());
  if (!contexts.ok()) {
    MP_LOG_ERROR("reload failed, keeping the running configuration: %s",
                 contexts.status().message().c_str());
    metrics_->RecordReload(false, now_unix);
    return;
  }
  if (Status s = alerts_->Configure(loaded->alerts); !s.ok()) {
    MP_LOG_ERROR("reload failed, keeping the running configuration: %s", s.message().c_str());
    metrics_->RecordReload(false, now_unix);
    return;
  }
  for (const std::string& key : SettingsNeedingRestart(settings_, *loaded)) {
    MP_LOG_WARNING("reload: %s changed; it takes effect at the next restart", key.c_str());
  }
  settings_.max_concurrent_checks = loaded->max_concurrent_checks;
  settings_.jitter_fraction = loaded->jitter_fraction;
  settings_.targets = loaded->targets;
  settings_.key = loaded->key;  // a new key signs from the next check on
  ApplyTargets(std::move(loaded->targets), std::move(*contexts));
  metrics_->RecordReload(true, now_unix);
  MP_LOG_INFO("configuration reloaded from %s: %zu targets", config_path_.c_str(), targets_.size());
}

void ProbeDaemon::Impl::ArmWakeTimer() {
  const std::optional<double> next = scheduler_.NextWake();
  if (!next) {
    event_del(wake_.get());
    return;
  }
  const timeval tv = ToTimeval(*next - MonotonicSeconds());
  evtimer_add(wake_.get(), &tv);
}

void ProbeDaemon::Impl::OnWakeTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("scheduler", [self] { self->OnWake(); });
}

void ProbeDaemon::Impl::OnWake() {
  for (const CheckScheduler::DueCheck& due : scheduler_.TakeDue(MonotonicSeconds())) {
    metrics_->RecordScheduleLag(due.late_seconds);
    StartCheck(due);
  }
  metrics_->SetRunning(running_.size());
  ArmWakeTimer();
}

void ProbeDaemon::Impl::StartCheck(const CheckScheduler::DueCheck& due) {
  auto it = targets_.find(due.name);
  if (it == targets_.end()) return;
  auto check = std::make_unique<RunningCheck>();
  check->target = it->second;
  const CheckPlan& plan = check->target.plan;
  if (plan.options.session.tls != TlsMode::kNone) {
    check->tls = tls_.at({plan.ca_file, plan.options.verify_certificate});
  }
  check->start_unix_us = UnixMicros();
  const ProbeSigner signer{settings_.key ? &*settings_.key : nullptr, settings_.name};
  CheckOptions options = OptionsForRun(plan, check->start_unix_us, &check->probe_id,
                                       check->target.roundtrip ? &signer : nullptr);
  if (const auto memory = tls_memory_.find(due.name);
      memory != tls_memory_.end() && check->target.tls_resume_seconds > 0 &&
      MonotonicSeconds() - memory->second.full_handshake_at < check->target.tls_resume_seconds) {
    options.tls_session = memory->second.session;
  }
  const std::string name = due.name;
  check->runner = std::make_unique<CheckRunner>(
      base_.get(), resolver_.get(), check->tls.get(), std::move(options),
      [this, name](CheckResult result) { OnCheckDone(name, std::move(result)); });
  CheckRunner* runner = check->runner.get();
  running_[name] = std::move(check);
  runner->Start();
}

void ProbeDaemon::Impl::OnCheckDone(const std::string& name, CheckResult result) {
  auto node = running_.extract(name);  // destroyed on return: allowed inside `done`
  scheduler_.Finished(name, MonotonicSeconds());
  metrics_->SetRunning(running_.size());
  if (node.empty()) return;
  const RunningCheck& check = *node.mapped();
  const CheckPlan& plan = check.target.plan;
  const bool implicit = plan.options.session.tls == TlsMode::kImplicit;
  const std::int64_t now_us = UnixMicros();
  const CheckVerdict verdict =
      JudgeCheck(plan.target.ToString(), result, plan.thresholds, implicit, now_us / 1000000);
  const FinishedCheck finished{
      settings_.name, name, check.start_unix_us, implicit, check.probe_id, &result, &verdict};
  if (verdict.state == NagiosState::kOk) {
    MP_LOG_DEBUG("%s", CheckLogLine(finished).c_str());
  } else {
    MP_LOG_WARNING("%s", CheckLogLine(finished).c_str());
  }
  if (targets_.contains(name)) {
    metrics_->RecordCheck(name, result, verdict, implicit, static_cast<double>(now_us) / 1e6);
    alerts_->OnCheck(name, result, verdict);
    RememberTlsSession(name, check.target, result);
    if (check.target.roundtrip && Accepted(result)) {
      std::shared_ptr<SSL_CTX> imap_tls;
      if (const auto& imap = check.target.imap) {
        imap_tls = tls_.at({imap->ca_file, imap->options.verify_certificate});
      }
      roundtrip_->Sent(check.target, check.probe_id, SentAt(check.start_unix_us, result),
                       result.outcome.queue_id, std::move(imap_tls));
    }
  }
  if (report_) {
    proto::Event event;
    *event.mutable_probe_result() = MakeProbeResult(finished);
    std::string frame;
    AppendEventFrame(event, &frame);
    report_->Enqueue(std::move(frame));
  }
  ArmWakeTimer();
}

void ProbeDaemon::Impl::RememberTlsSession(const std::string& name, const ProbeTarget& target,
                                           const CheckResult& result) {
  if (target.tls_resume_seconds <= 0 || !result.tls_session) return;
  TlsMemory& memory = tls_memory_[name];
  memory.session = result.tls_session;
  if (!result.tls.resumed) memory.full_handshake_at = MonotonicSeconds();
}

void ProbeDaemon::Impl::HandleEvent(const std::string& peer, const proto::Event& event) {
  const char* kind = EventKind(event);
  metrics_->RecordEvent(kind);
  MP_LOG_DEBUG("event peer %s: %s", peer.c_str(), kind);
  (void)roundtrip_->OnEvent(event);
  alerts_->OnEvent(event);
}

void ProbeDaemon::Impl::OnSignal(evutil_socket_t sig, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  if (sig == SIGHUP) {
    self->Guard("reload", [self] { self->Reload(); });
    return;
  }
  MP_LOG_INFO("signal %d: stopping", static_cast<int>(sig));
  event_base_loopbreak(self->base_.get());
}

StatusOr<std::unique_ptr<ProbeDaemon>> ProbeDaemon::Create(std::string config_path,
                                                           ProbeSettings settings) {
  auto impl = std::make_unique<Impl>(std::move(config_path), std::move(settings));
  if (Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<ProbeDaemon>(new ProbeDaemon(std::move(impl)));
}

ProbeDaemon::ProbeDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProbeDaemon::~ProbeDaemon() = default;
Status ProbeDaemon::DropPrivileges(const RunAs& run_as) { return impl_->DropPrivileges(run_as); }
Status ProbeDaemon::AfterFork() { return impl_->AfterFork(); }
int ProbeDaemon::Run() { return impl_->Run(); }

}  // namespace mailpulse
