#include "probe/roundtrip_tracker.h"

#include <chrono>
#include <exception>
#include <utility>

#include "shared/clock.h"
#include "shared/logging.h"
#include "shared/probe_token.h"

namespace mailpulse {
namespace {

template <typename F>
void Guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    MP_LOG_ERROR("round trip: %s: %s", what, e.what());
  } catch (...) {
    MP_LOG_ERROR("round trip: %s: unknown exception", what);
  }
}

}  // namespace

// One probe message whose delivery an IMAP mailbox confirms: polled until found or lost.
struct RoundTripTracker::ImapWatch {
  std::string probe_id;
  std::string target;
  ImapConfirmation confirmation;
  std::shared_ptr<SSL_CTX> tls;
  RoundTripTracker* owner = nullptr;
  EventPtr timer;
  std::unique_ptr<ImapConfirmer> running;
  bool warned = false;
};

RoundTripTracker::RoundTripTracker(event_base* base, Resolver* resolver, MetricsRegistry* registry,
                                   Correlator::Options options)
    : base_(base),
      resolver_(resolver),
      probe_name_(options.probe_name),
      correlator_(std::move(options)),
      metrics_(registry),
      journey_timer_(evtimer_new(base, &RoundTripTracker::OnJourneyTimer, this)) {}

RoundTripTracker::~RoundTripTracker() { imap_watches_.clear(); }

void RoundTripTracker::Sent(const ProbeTarget& target, const std::string& probe_id,
                            std::int64_t sent_unix_us, const std::string& queue_id,
                            std::shared_ptr<SSL_CTX> imap_tls) {
  correlator_.Sent(probe_id, target.name, sent_unix_us, queue_id);
  if (target.imap) StartImapWatch(target, probe_id, std::move(imap_tls));
  metrics_.SetPending(correlator_.pending());
  metrics_.SetOrphansDropped(correlator_.orphans_dropped());
  ArmJourneyTimer();
}

bool RoundTripTracker::OnEvent(const proto::Event& event) {
  Correlator::ReportKind kind;
  std::string probe_id;
  if (event.has_hop_sighting()) {
    probe_id = event.hop_sighting().probe_id();
    kind = correlator_.OnSighting(event.hop_sighting(), UnixMicros());
  } else if (event.has_probe_bounce()) {
    probe_id = event.probe_bounce().probe_id();
    kind = correlator_.OnBounce(event.probe_bounce(), UnixMicros());
  } else {
    return false;
  }
  if (kind == Correlator::ReportKind::kLate) CountLate(probe_id);
  FinishDue();
  return true;
}

void RoundTripTracker::CountLate(const std::string& probe_id) {
  if (const Journey* j = correlator_.Find(probe_id)) metrics_.RecordLate(j->target);
}

void RoundTripTracker::ForgetTarget(const std::string& target) { metrics_.ForgetTarget(target); }

void RoundTripTracker::OnJourneyTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<RoundTripTracker*>(arg);
  Guarded("finishing journeys", [self] { self->FinishDue(); });
}

void RoundTripTracker::FinishDue() {
  for (const Journey& j : correlator_.Expire(UnixMicros())) {
    metrics_.RecordFinished(j);
    if (j.outcome == JourneyOutcome::kDelivered) {
      MP_LOG_INFO("%s", JourneyLogLine(j).c_str());
    } else {
      MP_LOG_WARNING("%s", JourneyLogLine(j).c_str());
    }
    imap_watches_.erase(j.probe_id);
    if (listener_) listener_(j);
  }
  metrics_.SetPending(correlator_.pending());
  metrics_.SetOrphansDropped(correlator_.orphans_dropped());
  ArmJourneyTimer();
}

void RoundTripTracker::ArmJourneyTimer() {
  const std::optional<std::int64_t> next = correlator_.NextDeadline();
  if (!next) {
    event_del(journey_timer_.get());
    return;
  }
  const timeval tv = ToTimeval(static_cast<double>(*next - UnixMicros()) / 1e6 + 0.001);
  evtimer_add(journey_timer_.get(), &tv);
}

void RoundTripTracker::StartImapWatch(const ProbeTarget& target, const std::string& probe_id,
                                      std::shared_ptr<SSL_CTX> tls) {
  auto watch = std::make_unique<ImapWatch>();
  watch->probe_id = probe_id;
  watch->target = target.name;
  watch->confirmation = *target.imap;
  watch->tls = std::move(tls);
  watch->owner = this;
  watch->timer.reset(evtimer_new(base_, &RoundTripTracker::OnImapTimer, watch.get()));
  const timeval tv = ToTimeval(watch->confirmation.poll_seconds);
  evtimer_add(watch->timer.get(), &tv);
  imap_watches_[probe_id] = std::move(watch);
}

void RoundTripTracker::OnImapTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* watch = static_cast<ImapWatch*>(arg);
  Guarded("IMAP poll", [watch] { watch->owner->PollImap(watch); });
}

void RoundTripTracker::PollImap(ImapWatch* watch) {
  const Journey* j = correlator_.Find(watch->probe_id);
  if (j == nullptr || j->outcome != JourneyOutcome::kPending) {
    imap_watches_.erase(watch->probe_id);  // ended, or finished as lost
    return;
  }
  ImapOptions options = watch->confirmation.options;
  options.probe_id = watch->probe_id;
  const std::string id = watch->probe_id;
  watch->running = std::make_unique<ImapConfirmer>(
      base_, resolver_, watch->tls.get(), std::move(options),
      [this, id](ImapResult result) { OnImapDone(id, std::move(result)); });
  watch->running->Start();
}

void RoundTripTracker::OnImapDone(const std::string& probe_id, ImapResult result) {
  auto it = imap_watches_.find(probe_id);
  if (it == imap_watches_.end()) return;
  ImapWatch& watch = *it->second;
  const ImapOutcome& o = result.outcome;
  if (!o.found()) {
    if (!o.success && !watch.warned) {
      MP_LOG_WARNING("journey %s: IMAP confirmation at %s failed (%s); trying again",
                     probe_id.c_str(), watch.confirmation.options.host.c_str(),
                     (o.server_text.empty() ? o.detail : o.server_text).c_str());
      watch.warned = true;
    }
    watch.running.reset();
    const timeval tv = ToTimeval(watch.confirmation.poll_seconds);
    evtimer_add(watch.timer.get(), &tv);
    return;
  }
  const std::int64_t now = UnixMicros();
  // The trail the message carries (hops whose milter reported already are duplicates), then
  // its arrival in the mailbox: the journey's end.
  for (const std::string& text : o.messages.front().hop_stamps) {
    StatusOr<HopStampFields> stamp = ParseHopStamp(text);
    if (!stamp.ok()) continue;
    proto::HopSighting s;
    s.set_probe_id(probe_id);
    s.set_probe_source(probe_name_);
    s.set_hop(stamp->hop);
    s.set_queue_id(stamp->queue_id);
    s.set_eom_unix_us(stamp->time_unix_us);
    (void)correlator_.OnSighting(s, now);
  }
  proto::HopSighting delivered;
  delivered.set_probe_id(probe_id);
  delivered.set_probe_source(probe_name_);
  delivered.set_hop("imap:" + watch.confirmation.options.host);
  delivered.set_eom_unix_us(now);
  delivered.set_delivered(true);
  MP_LOG_INFO("journey %s: found in mailbox %s of %s at %s over IMAP%s", probe_id.c_str(),
              watch.confirmation.options.mailbox.c_str(), watch.confirmation.options.user.c_str(),
              watch.confirmation.options.host.c_str(), o.deleted > 0 ? ", deleted" : "");
  imap_watches_.erase(it);  // destroys the confirmer, which is allowed inside its callback
  if (correlator_.OnSighting(delivered, now) == Correlator::ReportKind::kLate) {
    CountLate(probe_id);
  }
  FinishDue();
}

std::optional<std::string> RoundTripTracker::JourneysJson(std::string_view path) const {
  if (path == "/journeys" || path == "/journeys/") {
    nlohmann::json list = nlohmann::json::array();
    for (const Journey& j : correlator_.history()) list.push_back(JourneyJson(j));
    for (const Journey* j : correlator_.PendingJourneys()) list.push_back(JourneyJson(*j));
    return list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  constexpr std::string_view kPrefix = "/journeys/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  const Journey* j = correlator_.Find(path.substr(kPrefix.size()));
  if (j == nullptr) return std::nullopt;
  return JourneyJson(*j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace mailpulse
