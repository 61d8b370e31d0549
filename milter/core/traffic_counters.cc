#include "milter/core/traffic_counters.h"

namespace mailpulse {

std::string_view RejectStageName(RejectStage s) {
  switch (s) {
    case RejectStage::kConnect:
      return "connect";
    case RejectStage::kHelo:
      return "helo";
    case RejectStage::kMail:
      return "mail";
    case RejectStage::kRcpt:
      return "rcpt";
    case RejectStage::kData:
      return "data";
    case RejectStage::kEom:
      return "eom";
  }
  return "rcpt";
}

namespace {

// Enough for every direction x stage x real enhanced code; a flood of odd codes collapses
// into the registry's overflow series instead of growing without bound.
constexpr std::size_t kMaxRejectSeries = 512;

}  // namespace

TrafficCounters::TrafficCounters(MetricsRegistry* registry) {
  const std::vector<std::string> dir = {"direction"};
  auto& connections = registry->AddCounter(
      "mailpulse_milter_connections_total",
      "SMTP connections that ended, by direction (counted at disconnect).", dir);
  auto& tls = registry->AddCounter("mailpulse_milter_tls_connections_total",
                                   "Connections that used TLS, by direction.", dir);
  auto& messages = registry->AddCounter("mailpulse_milter_messages_total",
                                        "Messages that reached end of data, by direction.", dir);
  auto& recipients = registry->AddCounter("mailpulse_milter_recipients_total",
                                          "Accepted recipients of those messages.", dir);
  auto& bytes =
      registry->AddCounter("mailpulse_milter_bytes_total",
                           "Message bytes (headers and body) as the milter saw them.", dir);
  auto& aborts = registry->AddCounter(
      "mailpulse_milter_aborts_total",
      "Transactions with an accepted recipient that ended before end of data.", dir);
  rejects_family_ = &registry->AddCounter(
      "mailpulse_milter_rejects_total",
      "Rejects by the MTA, by direction, SMTP stage and enhanced status code.",
      {"direction", "stage", "status"}, kMaxRejectSeries);
  for (int i = 0; i < kDirectionCount; ++i) {
    const std::string name(DirectionName(static_cast<Direction>(i)));
    by_direction_[i] = {&connections.WithLabels({name}), &tls.WithLabels({name}),
                        &messages.WithLabels({name}),    &recipients.WithLabels({name}),
                        &bytes.WithLabels({name}),       &aborts.WithLabels({name})};
  }
}

void TrafficCounters::AddConnection(Direction d, bool tls) {
  const PerDirection& p = by_direction_[static_cast<int>(d)];
  p.connections->Inc();
  if (tls) p.tls_connections->Inc();
}

void TrafficCounters::AddMessage(Direction d, std::uint64_t recipients, std::uint64_t bytes) {
  const PerDirection& p = by_direction_[static_cast<int>(d)];
  p.messages->Inc();
  p.recipients->Inc(recipients);
  p.bytes->Inc(bytes);
}

void TrafficCounters::AddAbort(Direction d) { by_direction_[static_cast<int>(d)].aborts->Inc(); }

void TrafficCounters::AddReject(Direction d, RejectStage stage, std::string_view status) {
  std::lock_guard<std::mutex> lock(rejects_mu_);
  auto key = std::make_tuple(d, stage, std::string(status));
  auto it = rejects_.find(key);
  if (it == rejects_.end()) {
    Counter* c = &rejects_family_->WithLabels(
        {DirectionName(d), RejectStageName(stage), std::string_view(std::get<2>(key))});
    it = rejects_.emplace(std::move(key), c).first;
  }
  it->second->Inc();
}

void TrafficCounters::Snapshot(proto::TrafficSnapshot* out) const {
  proto::TrafficCounters* dirs[kDirectionCount] = {out->mutable_inbound(), out->mutable_outbound(),
                                                   out->mutable_local()};
  for (int i = 0; i < kDirectionCount; ++i) {
    const PerDirection& p = by_direction_[i];
    proto::TrafficCounters* t = dirs[i];
    t->set_connections(p.connections->Value());
    t->set_tls_connections(p.tls_connections->Value());
    t->set_messages(p.messages->Value());
    t->set_recipients(p.recipients->Value());
    t->set_bytes(p.bytes->Value());
    t->set_aborts(p.aborts->Value());
  }
  std::lock_guard<std::mutex> lock(rejects_mu_);
  for (const auto& [key, counter] : rejects_) {
    proto::RejectCount* r = out->add_rejects();
    r->set_direction(std::string(DirectionName(std::get<0>(key))));
    r->set_stage(std::string(RejectStageName(std::get<1>(key))));
    r->set_status(std::get<2>(key));
    r->set_count(counter->Value());
  }
}

}  // namespace mailpulse
