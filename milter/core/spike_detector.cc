#include "milter/core/spike_detector.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

namespace mailpulse {
namespace {

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();
// Forward decay (Cormode et al., 2009): a weight w at time t is stored as w·e^{(t-L)/τ} against
// a landmark L, so every entry decays at once without being touched and counts stay
// comparable. Past this exponent the landmark moves and everything is scaled down.
constexpr double kMaxForwardExponent = 200;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

enum class State : std::uint8_t { kNormal, kRising, kSpiking, kFalling };

struct Entry {
  const std::string* key = nullptr;  // the map's key (node-based map: stable)
  double short_messages = 0;         // decayed with short_window_seconds ...
  double short_recipients = 0;
  double short_time = 0;     // ... as of this time
  double long_messages = 0;  // the baseline's counts, forward-decayed
  double long_recipients = 0;
  double score = 0;  // Space-Saving count (forward-decayed messages, with inherited error)
  std::size_t heap_index = kNone;
  std::size_t active_index = kNone;
  State state = State::kNormal;
  double state_since = 0;
  double spike_start = 0;
  std::uint64_t spike_messages = 0;
  std::vector<std::string> domains;  // while rising or spiking
};

struct Rates {  // per minute
  double messages = 0;
  double recipients = 0;
  double baseline_messages = 0;
  double baseline_recipients = 0;
};

bool Spiking(const Entry& e) { return e.state == State::kSpiking || e.state == State::kFalling; }

}  // namespace

std::string_view KeyKindName(KeyKind k) {
  switch (k) {
    case KeyKind::kSaslLogin:
      return "sasl_login";
    case KeyKind::kClientIp:
      return "client_ip";
    case KeyKind::kSenderDomain:
      return "sender_domain";
    case KeyKind::kTotal:
      return "total";
  }
  return "total";
}

// One kind's entries: a hash map for lookup, a min-heap on `score` of the entries that may be
// evicted (all but the spiking ones), and the list of entries whose state is not normal.
class SpikeDetector::KeyTable {
 public:
  KeyTable(KeyKind kind, const SpikeSettings& settings, double start)
      : kind_(kind), s_(settings), start_(start), landmark_(start) {
    map_.reserve(std::min<std::size_t>(s_.max_keys, 1 << 16));
  }

  void Count(std::string_view key, const OutboundMessage& m, double now,
             std::vector<SpikeEvent>* events) {
    Entry* e = kind_ == KeyKind::kTotal ? &total_ : FindOrInsert(key);
    if (e == nullptr) {
      ++untracked_;
      return;
    }
    Renormalize(now);
    // The baseline is fed what leaks out of the short window (a cascade of the two decays), so
    // the seconds the short rate is judged on are not yet part of the baseline it is judged
    // against. The leak happened within about one short window after the last update: weigh
    // it as of then.
    const double decay = std::exp(-(now - e->short_time) / s_.short_window_seconds);
    const double leaked_messages = e->short_messages * (1 - decay);
    const double leaked_recipients = e->short_recipients * (1 - decay);
    const double leaked_at = std::min(now, e->short_time + s_.short_window_seconds);
    e->short_messages = e->short_messages * decay + 1;
    e->short_recipients = e->short_recipients * decay + m.recipients;
    e->short_time = now;
    e->score += Forward(now);
    if (!Spiking(*e)) {  // a flood must not become the normal it is measured against
      const double forward =
          leaked_at == now ? Forward(now) : std::exp((leaked_at - landmark_) / s_.baseline_seconds);
      e->long_messages += forward * leaked_messages;
      e->long_recipients += forward * leaked_recipients;
    } else {
      ++e->spike_messages;
    }
    if (e->heap_index != kNone) SiftDown(e->heap_index);
    Evaluate(e, now, events);
    if (e->state != State::kNormal) Sample(e, m);
  }

  void Tick(double now, std::vector<SpikeEvent>* events) {
    // Evaluate may take an entry off the active list (swap-remove): walk it backwards.
    for (std::size_t i = active_.size(); i-- > 0;) {
      if (i < active_.size()) Evaluate(active_[i], now, events);
    }
  }

  const Entry* Find(std::string_view key) const {
    if (kind_ == KeyKind::kTotal) return &total_;
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }

  Rates RatesAt(const Entry& e, double now) const {
    Rates r;
    const double short_decay =
        now <= e.short_time ? 1 : std::exp(-(now - e.short_time) / s_.short_window_seconds);
    r.messages = e.short_messages * short_decay / s_.short_window_seconds * 60;
    r.recipients = e.short_recipients * short_decay / s_.short_window_seconds * 60;
    const double back = Back(now);
    r.baseline_messages = e.long_messages * back;
    r.baseline_recipients = e.long_recipients * back;
    return r;
  }

  KeyRate ToKeyRate(const Entry& e, double now) const {
    const Rates r = RatesAt(e, now);
    return {kind_,
            e.key != nullptr ? *e.key : std::string(),
            r.messages,
            r.recipients,
            r.baseline_messages,
            r.baseline_recipients,
            Spiking(e)};
  }

  std::vector<KeyRate> Top(std::size_t n, double now) const {
    std::vector<KeyRate> all;
    all.reserve(map_.size());
    for (const auto& [key, e] : map_) all.push_back(ToKeyRate(e, now));
    n = std::min(n, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                      [](const KeyRate& a, const KeyRate& b) {
                        return a.messages_per_minute > b.messages_per_minute;
                      });
    all.resize(n);
    return all;
  }

  std::size_t tracked() const { return kind_ == KeyKind::kTotal ? 1 : map_.size(); }
  std::size_t spiking() const { return spiking_; }
  std::uint64_t evicted() const { return evicted_; }
  std::uint64_t untracked() const { return untracked_; }

  std::size_t ApproxBytes() const {
    // A libstdc++ hash node: next pointer, the pair, the cached hash.
    constexpr std::size_t kNode =
        sizeof(void*) + sizeof(std::pair<const std::string, Entry>) + sizeof(std::size_t);
    std::size_t bytes = map_.bucket_count() * sizeof(void*) + map_.size() * kNode +
                        heap_.capacity() * sizeof(Entry*) + active_.capacity() * sizeof(Entry*);
    for (const auto& [key, e] : map_) {
      if (key.capacity() > 15) bytes += key.capacity() + 1;  // beyond the inline buffer
      for (const std::string& d : e.domains) bytes += sizeof(std::string) + d.capacity();
    }
    return bytes;
  }

 private:
  // e^{(now-L)/τ}, the forward-decay weight of a count made now; cached for the last `now`,
  // since one message asks for it several times.
  double Forward(double now) const {
    if (now != forward_now_) {
      forward_now_ = now;
      forward_ = std::exp((now - landmark_) / s_.baseline_seconds);
    }
    return forward_;
  }

  // From forward-decayed counts to a rate per minute: back to `now`, and the bias correction
  // (a decayed count of a constant rate r since start is r·τ·(1 - e^{-age/τ})). Cached too.
  double Back(double now) const {
    if (now != back_now_) {
      const double tau = s_.baseline_seconds;
      const double warmth =
          std::max(1 - std::exp(-(now - start_) / tau), s_.short_window_seconds / tau);
      back_now_ = now;
      back_ = 60 / (Forward(now) * tau * warmth);
    }
    return back_;
  }

  Entry* FindOrInsert(std::string_view key) {
    if (auto it = map_.find(key); it != map_.end()) return &it->second;
    double inherited = 0;
    if (map_.size() >= s_.max_keys) {
      if (heap_.empty()) return nullptr;  // every entry spikes: never evict one
      Entry* victim = heap_.front();
      inherited = victim->score;
      HeapRemove(victim);
      if (victim->active_index != kNone) ActiveRemove(victim);
      map_.erase(map_.find(*victim->key));  // by iterator: the key lives in the node
      ++evicted_;
    }
    auto [it, inserted] = map_.try_emplace(std::string(key));
    Entry& e = it->second;
    e.key = &it->first;
    e.score = inherited;
    e.short_time = 0;
    HeapPush(&e);
    return &e;
  }

  void Sample(Entry* e, const OutboundMessage& m) {
    for (std::string_view d : m.recipient_domains) {
      if (e->domains.size() >= s_.domain_sample) return;
      if (std::find(e->domains.begin(), e->domains.end(), d) == e->domains.end()) {
        e->domains.emplace_back(d);
      }
    }
  }

  void Evaluate(Entry* e, double now, std::vector<SpikeEvent>* events) {
    const Rates r = RatesAt(*e, now);
    const double threshold_m =
        std::max(s_.min_messages_per_minute,
                 s_.factor * std::max(r.baseline_messages, s_.floor_messages_per_minute));
    const double threshold_r =
        std::max(s_.min_recipients_per_minute,
                 s_.factor * std::max(r.baseline_recipients, s_.floor_recipients_per_minute));
    const bool above = r.messages >= threshold_m || r.recipients >= threshold_r;
    const bool below =
        r.messages < s_.end_ratio * threshold_m && r.recipients < s_.end_ratio * threshold_r;
    switch (e->state) {
      case State::kNormal:
        if (above) SetState(e, State::kRising, now);
        break;
      case State::kRising:
        if (!above) {
          SetState(e, State::kNormal, now);
        } else if (now - e->state_since >= s_.hold_seconds && now - start_ >= s_.learning_seconds) {
          SetState(e, State::kSpiking, now);
          e->spike_start = now;
          e->spike_messages = 0;
          ++spiking_;
          if (e->heap_index != kNone) HeapRemove(e);
          events->push_back(Event(*e, r, true, now));
        }
        break;
      case State::kSpiking:
        if (below) SetState(e, State::kFalling, now);
        break;
      case State::kFalling:
        if (!below) {
          e->state = State::kSpiking;  // back up: the spike goes on
        } else if (now - e->state_since >= s_.end_hold_seconds) {
          events->push_back(Event(*e, r, false, now));
          --spiking_;
          SetState(e, State::kNormal, now);
          if (kind_ != KeyKind::kTotal) HeapPush(e);
        }
        break;
    }
  }

  SpikeEvent Event(const Entry& e, const Rates& r, bool started, double now) const {
    SpikeEvent ev;
    ev.started = started;
    ev.kind = kind_;
    if (e.key != nullptr) ev.key = *e.key;
    ev.messages_per_minute = r.messages;
    ev.recipients_per_minute = r.recipients;
    ev.baseline_messages_per_minute = r.baseline_messages;
    ev.baseline_recipients_per_minute = r.baseline_recipients;
    ev.recipient_domains = e.domains;
    ev.since_seconds = e.spike_start;
    if (!started) {
      ev.duration_seconds = now - e.spike_start;
      ev.messages = e.spike_messages;
    }
    return ev;
  }

  void SetState(Entry* e, State s, double now) {
    e->state = s;
    e->state_since = now;
    if (s == State::kNormal) {
      e->domains.clear();
      e->domains.shrink_to_fit();
      if (e->active_index != kNone) ActiveRemove(e);
    } else if (e->active_index == kNone) {
      e->active_index = active_.size();
      active_.push_back(e);
    }
  }

  void ActiveRemove(Entry* e) {
    const std::size_t i = e->active_index;
    active_[i] = active_.back();
    active_[i]->active_index = i;
    active_.pop_back();
    e->active_index = kNone;
  }

  // Moves the landmark forward before forward-decayed counts could overflow.
  void Renormalize(double now) {
    const double exponent = (now - landmark_) / s_.baseline_seconds;
    if (exponent < kMaxForwardExponent) return;
    const double scale = std::exp(-exponent);
    auto rescale = [scale](Entry& e) {
      e.long_messages *= scale;
      e.long_recipients *= scale;
      e.score *= scale;
    };
    rescale(total_);
    for (auto& [key, e] : map_) rescale(e);
    landmark_ = now;
    forward_now_ = back_now_ = -1;  // the cached factors were for the old landmark
  }

  // A binary min-heap on score; each entry knows its index.
  void HeapPush(Entry* e) {
    e->heap_index = heap_.size();
    heap_.push_back(e);
    SiftUp(e->heap_index);
  }

  void HeapRemove(Entry* e) {
    const std::size_t i = e->heap_index;
    Entry* last = heap_.back();
    heap_.pop_back();
    e->heap_index = kNone;
    if (last == e) return;
    heap_[i] = last;
    last->heap_index = i;
    SiftDown(i);
    SiftUp(last->heap_index);
  }

  void SiftUp(std::size_t i) {
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (heap_[parent]->score <= heap_[i]->score) return;
      Swap(i, parent);
      i = parent;
    }
  }

  void SiftDown(std::size_t i) {
    for (;;) {
      const std::size_t left = 2 * i + 1;
      if (left >= heap_.size()) return;
      std::size_t least = left;
      if (left + 1 < heap_.size() && heap_[left + 1]->score < heap_[left]->score) ++least;
      if (heap_[i]->score <= heap_[least]->score) return;
      Swap(i, least);
      i = least;
    }
  }

  void Swap(std::size_t a, std::size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->heap_index = a;
    heap_[b]->heap_index = b;
  }

  KeyKind kind_;
  const SpikeSettings& s_;
  double start_;
  double landmark_;
  mutable double forward_now_ = -1, forward_ = 1;
  mutable double back_now_ = -1, back_ = 0;
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> map_;
  Entry total_;  // the one entry of the total
  std::vector<Entry*> heap_;
  std::vector<Entry*> active_;
  std::size_t spiking_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t untracked_ = 0;
};

SpikeDetector::SpikeDetector(const SpikeSettings& settings, double now)
    : settings_(settings), start_(now), last_now_(now) {
  for (std::size_t k = 0; k < kKeyKindCount; ++k) {
    tables_[k] = std::make_unique<KeyTable>(static_cast<KeyKind>(k), settings_, now);
  }
}

SpikeDetector::~SpikeDetector() = default;

void SpikeDetector::OnMessage(const OutboundMessage& m, double now) {
  now = std::max(now, last_now_);
  last_now_ = now;
  auto count = [&](KeyKind kind, bool on, std::string_view key) {
    if (on && !key.empty()) tables_[static_cast<std::size_t>(kind)]->Count(key, m, now, &events_);
  };
  count(KeyKind::kSaslLogin, settings_.by_sasl_login, m.sasl_login);
  count(KeyKind::kClientIp, settings_.by_client_ip, m.client_ip);
  count(KeyKind::kSenderDomain, settings_.by_sender_domain, m.sender_domain);
  tables_[static_cast<std::size_t>(KeyKind::kTotal)]->Count({}, m, now, &events_);
}

void SpikeDetector::Tick(double now) {
  now = std::max(now, last_now_);
  last_now_ = now;
  for (auto& table : tables_) table->Tick(now, &events_);
}

std::vector<SpikeEvent> SpikeDetector::TakeEvents() { return std::exchange(events_, {}); }

double SpikeDetector::MessagesPerMinute(KeyKind kind, std::string_view key, double now) const {
  const KeyTable& table = *tables_[static_cast<std::size_t>(kind)];
  const Entry* e = table.Find(key);
  return e == nullptr ? 0 : table.RatesAt(*e, now).messages;
}

std::vector<KeyRate> SpikeDetector::Top(KeyKind kind, std::size_t n, double now) const {
  if (kind == KeyKind::kTotal) return {Total(now)};
  return tables_[static_cast<std::size_t>(kind)]->Top(n, now);
}

KeyRate SpikeDetector::Total(double now) const {
  const KeyTable& table = *tables_[static_cast<std::size_t>(KeyKind::kTotal)];
  return table.ToKeyRate(*table.Find({}), now);
}

std::size_t SpikeDetector::spiking(KeyKind kind) const {
  return tables_[static_cast<std::size_t>(kind)]->spiking();
}
std::size_t SpikeDetector::tracked(KeyKind kind) const {
  return tables_[static_cast<std::size_t>(kind)]->tracked();
}
std::uint64_t SpikeDetector::evicted(KeyKind kind) const {
  return tables_[static_cast<std::size_t>(kind)]->evicted();
}
std::uint64_t SpikeDetector::untracked(KeyKind kind) const {
  return tables_[static_cast<std::size_t>(kind)]->untracked();
}

std::size_t SpikeDetector::ApproxBytes() const {
  std::size_t bytes = sizeof(*this);
  for (const auto& table : tables_) bytes += sizeof(KeyTable) + table->ApproxBytes();
  return bytes;
}

}  // namespace mailpulse
