#include "milter/spike_watch.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <utility>

#include "shared/frame_codec.h"
#include "shared/logging.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {
namespace {

constexpr KeyKind kKeyKinds[] = {KeyKind::kSaslLogin, KeyKind::kClientIp, KeyKind::kSenderDomain,
                                 KeyKind::kTotal};

std::string Label(KeyKind k) { return std::string(KeyKindName(k)); }

std::string Domains(const std::vector<std::string>& domains) {
  std::string out;
  for (const std::string& d : domains) out += (out.empty() ? "" : ", ") + d;
  return out.empty() ? "-" : out;
}

}  // namespace

StatusOr<SpikeWatchSettings> SpikeWatchSettingsFrom(const Config& config) {
  auto fail = [&](std::string_view key, const std::string& why) {
    return Status::Error(config.Where(key) + ": " + std::string(key) + ": " + why);
  };
  SpikeWatchSettings out;
  SpikeSettings& s = out.detector;
  s.by_sasl_login = s.by_client_ip = s.by_sender_domain = false;
  for (const std::string& k : config.GetStringList("milter.spike_keys")) {
    if (k == "sasl_login") {
      s.by_sasl_login = true;
    } else if (k == "client_ip") {
      s.by_client_ip = true;
    } else if (k == "sender_domain") {
      s.by_sender_domain = true;
    } else {
      return fail("milter.spike_keys",
                  "expected sasl_login, client_ip or sender_domain, got '" + k + "'");
    }
  }
  struct Window {
    const char* key;
    double* value;
    double min;
  };
  for (const Window& w : {Window{"milter.spike_short_window", &s.short_window_seconds, 1},
                          Window{"milter.spike_baseline_window", &s.baseline_seconds, 60},
                          Window{"milter.spike_learning", &s.learning_seconds, 0},
                          Window{"milter.spike_hold", &s.hold_seconds, 0},
                          Window{"milter.spike_end_hold", &s.end_hold_seconds, 0}}) {
    *w.value = config.GetSeconds(w.key);
    if (*w.value < w.min) {
      char why[64];
      std::snprintf(why, sizeof why, "must be at least %gs", w.min);
      return fail(w.key, why);
    }
  }
  if (s.baseline_seconds < 10 * s.short_window_seconds) {
    return fail("milter.spike_baseline_window", "must be at least ten short windows");
  }
  struct Number {
    const char* key;
    double* value;
    std::int64_t min, max;
  };
  double end_percent = 50, max_keys = 0;
  for (const Number& n :
       {Number{"milter.spike_min_messages_per_minute", &s.min_messages_per_minute, 1, 1000000},
        Number{"milter.spike_min_recipients_per_minute", &s.min_recipients_per_minute, 1, 10000000},
        Number{"milter.spike_factor", &s.factor, 2, 1000},
        Number{"milter.spike_floor_messages_per_minute", &s.floor_messages_per_minute, 0, 1000000},
        Number{"milter.spike_floor_recipients_per_minute", &s.floor_recipients_per_minute, 0,
               10000000},
        Number{"milter.spike_end_percent", &end_percent, 1, 99},
        Number{"milter.spike_max_keys", &max_keys, 100, 10000000},
        Number{"milter.throttle_messages_per_minute", &out.throttle.messages_per_minute, 1,
               1000000}}) {
    const std::int64_t v = config.GetInt(n.key);
    if (v < n.min || v > n.max) {
      return fail(n.key, "must be from " + std::to_string(n.min) + " to " + std::to_string(n.max));
    }
    *n.value = static_cast<double>(v);
  }
  s.end_ratio = end_percent / 100;
  s.max_keys = static_cast<std::size_t>(max_keys);
  out.throttle.on = config.GetBool("milter.throttle");
  for (const std::string& a : config.GetStringList("milter.throttle_allow")) {
    out.throttle.allow.insert(a);
  }
  return out;
}

SpikeWatch::SpikeWatch(const SpikeWatchSettings& settings, MetricsRegistry* r, std::string hop,
                       PostEvent post_event, double now)
    : throttle_(settings.throttle),
      hop_(std::move(hop)),
      post_event_(std::move(post_event)),
      detector_(settings.detector, now),
      spikes_(r->AddCounter("mailpulse_milter_outbound_spikes_total",
                            "Outbound spikes that started, by key kind (sasl_login, client_ip, "
                            "sender_domain, total); the keys are in the log and the events.",
                            {"key_kind"})),
      active_(r->AddGauge("mailpulse_milter_outbound_spike_active",
                          "Keys of this kind spiking now.", {"key_kind"})),
      throttled_(r->AddCounter("mailpulse_milter_outbound_throttled_total",
                               "Outbound messages tempfailed at MAIL (451 4.7.1) by throttling, "
                               "by the kind of the key over the limit.",
                               {"key_kind"})),
      tracked_(r->AddGauge("mailpulse_milter_outbound_keys_tracked",
                           "Keys whose outbound rates are kept, by kind (at most "
                           "milter.spike_max_keys).",
                           {"key_kind"})) {
  for (KeyKind k : kKeyKinds) {
    spikes_.WithLabels({Label(k)});
    active_.WithLabels({Label(k)}).Set(0);
    if (k != KeyKind::kTotal) tracked_.WithLabels({Label(k)}).Set(0);
    if (k != KeyKind::kTotal && throttle_.on) throttled_.WithLabels({Label(k)});
  }
}

void SpikeWatch::OnMessage(const OutboundMessage& message, double now) {
  std::lock_guard<std::mutex> lock(mu_);
  detector_.OnMessage(message, now);
}

std::optional<std::string> SpikeWatch::Throttle(std::string_view sasl_login,
                                                std::string_view client_ip,
                                                std::string_view sender_domain, double now) {
  if (!throttle_.on) return std::nullopt;
  const std::pair<KeyKind, std::string_view> keys[] = {{KeyKind::kSaslLogin, sasl_login},
                                                       {KeyKind::kClientIp, client_ip},
                                                       {KeyKind::kSenderDomain, sender_domain}};
  double rates[3] = {};
  {
    std::lock_guard<std::mutex> lock(mu_);  // once for the three lookups
    for (std::size_t i = 0; i < 3; ++i) {
      const auto& [kind, key] = keys[i];
      if (!key.empty()) rates[i] = detector_.MessagesPerMinute(kind, key, now);
    }
  }
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& [kind, key] = keys[i];
    const double rate = rates[i];
    if (key.empty() || rate < throttle_.messages_per_minute) continue;
    if (throttle_.allow.count(key) != 0) continue;
    throttled_.WithLabels({Label(kind)}).Inc();
    char text[256];
    std::snprintf(text, sizeof text,
                  "Too much mail from %s %.*s (%.0f messages a minute, limit %.0f); try again "
                  "later",
                  kind == KeyKind::kSaslLogin  ? "login"
                  : kind == KeyKind::kClientIp ? "address"
                                               : "sender domain",
                  static_cast<int>(key.size()), key.data(), rate, throttle_.messages_per_minute);
    return std::string(text);
  }
  return std::nullopt;
}

void SpikeWatch::Tick(double now, std::int64_t now_unix_us) {
  std::vector<SpikeEvent> events;
  std::size_t spiking[kKeyKindCount] = {};
  std::size_t tracked[kKeyKindCount] = {};
  {
    std::lock_guard<std::mutex> lock(mu_);
    detector_.Tick(now);
    events = detector_.TakeEvents();
    for (KeyKind k : kKeyKinds) {
      spiking[static_cast<std::size_t>(k)] = detector_.spiking(k);
      tracked[static_cast<std::size_t>(k)] = detector_.tracked(k);
    }
  }
  for (const SpikeEvent& e : events) Report(e, now_unix_us, now);
  for (KeyKind k : kKeyKinds) {
    active_.WithLabels({Label(k)}).Set(static_cast<double>(spiking[static_cast<std::size_t>(k)]));
    if (k != KeyKind::kTotal) {
      tracked_.WithLabels({Label(k)})
          .Set(static_cast<double>(tracked[static_cast<std::size_t>(k)]));
    }
  }
}

void SpikeWatch::Report(const SpikeEvent& e, std::int64_t now_unix_us, double now) {
  const std::string kind = Label(e.kind);
  const std::string key = e.kind == KeyKind::kTotal ? "all outbound mail" : e.key;
  if (e.started) {
    spikes_.WithLabels({kind}).Inc();
    MP_LOG_WARNING(
        "outbound spike started: %s %s: %.1f messages and %.1f recipients a minute (baseline "
        "%.1f and %.1f); recipient domains %s",
        kind.c_str(), key.c_str(), e.messages_per_minute, e.recipients_per_minute,
        e.baseline_messages_per_minute, e.baseline_recipients_per_minute,
        Domains(e.recipient_domains).c_str());
  } else {
    MP_LOG_INFO("outbound spike ended: %s %s after %.0f s and %llu messages (now %.1f a minute)",
                kind.c_str(), key.c_str(), e.duration_seconds,
                static_cast<unsigned long long>(e.messages), e.messages_per_minute);
  }
  if (!post_event_) return;
  proto::Event event;
  proto::OutboundSpike* s = event.mutable_outbound_spike();
  s->set_source(hop_);
  s->set_started(e.started);
  s->set_key_kind(kind);
  s->set_key(e.key);
  s->set_messages_per_minute(e.messages_per_minute);
  s->set_recipients_per_minute(e.recipients_per_minute);
  s->set_baseline_messages_per_minute(e.baseline_messages_per_minute);
  s->set_baseline_recipients_per_minute(e.baseline_recipients_per_minute);
  for (const std::string& d : e.recipient_domains) s->add_recipient_domains(d);
  s->set_time_unix_us(now_unix_us);
  s->set_since_unix_us(now_unix_us - static_cast<std::int64_t>((now - e.since_seconds) * 1e6));
  s->set_duration_seconds(e.duration_seconds);
  s->set_messages(e.messages);
  std::string frame;
  AppendEventFrame(event, &frame);
  post_event_(std::move(frame));
}

std::string SpikeWatch::TopJson(std::size_t n, double now) const {
  auto row = [](const KeyRate& r) {
    return nlohmann::json{{"key", r.key},
                          {"messages_per_minute", r.messages_per_minute},
                          {"recipients_per_minute", r.recipients_per_minute},
                          {"baseline_messages_per_minute", r.baseline_messages_per_minute},
                          {"baseline_recipients_per_minute", r.baseline_recipients_per_minute},
                          {"spiking", r.spiking}};
  };
  nlohmann::json out = nlohmann::json::object();
  std::lock_guard<std::mutex> lock(mu_);
  for (KeyKind k : kKeyKinds) {
    if (k == KeyKind::kTotal) {
      out["total"] = row(detector_.Total(now));
      continue;
    }
    nlohmann::json rows = nlohmann::json::array();
    for (const KeyRate& r : detector_.Top(k, n, now)) rows.push_back(row(r));
    out[Label(k)] = {
        {"tracked", detector_.tracked(k)}, {"evicted", detector_.evicted(k)}, {"top", rows}};
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace mailpulse
