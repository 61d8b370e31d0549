#include "milter/core/spike_detector.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

namespace mailpulse {
namespace {

// Entries are numbered by uint32_t: milter.spike_max_keys is at most 10,000,000.
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
// Forward decay (Cormode et al., 2009): a weight w at time t is stored as w·e^{(t-L)/τ} against
// a landmark L, so every entry decays at once without being touched and counts stay
// comparable. Past this exponent the landmark moves and everything is scaled down.
constexpr double kMaxForwardExponent = 200;

enum class State : std::uint8_t { kNormal, kRising, kSpiking, kFalling };

// What every message of a key reads and writes, in one cache line; the key itself and what only
// a key out of the normal state needs are kept apart (StoredKey, EntryDetail).
struct alignas(64) Entry {
  double short_messages = 0;  // decayed with short_window_seconds ...
  double short_recipients = 0;
  double short_time = 0;     // ... as of this time
  double long_messages = 0;  // the baseline's counts, forward-decayed
  double long_recipients = 0;
  double score = 0;  // Space-Saving count (forward-decayed messages, with inherited error)
  double state_since = 0;
  std::uint32_t hash = 0;  // the key's, as its slot holds it: finds the slot without the key
  State state = State::kNormal;
};
static_assert(sizeof(Entry) == 64);

// A key, inline in one cache line when it fits (logins, addresses and domains nearly always
// do), else on the heap. An eviction writes the new key into a line already prefetched, and a
// lookup compares within it, rather than following a std::string's pointer to a second line.
class alignas(64) StoredKey {
 public:
  StoredKey() = default;
  explicit StoredKey(std::string_view key) { assign(key); }

  std::string_view view() const { return {size_ <= kInline ? inline_ : heap_.get(), size_}; }

  // Keeps a heap buffer for the next long key, as std::string::assign does.
  void assign(std::string_view key) {
    char* to = inline_;
    if (key.size() > kInline) {
      if (key.size() > heap_capacity_) {
        heap_ = std::make_unique_for_overwrite<char[]>(key.size());
        heap_capacity_ = static_cast<std::uint32_t>(key.size());
      }
      to = heap_.get();
    }
    if (!key.empty()) std::memcpy(to, key.data(), key.size());
    size_ = static_cast<std::uint32_t>(key.size());  // SMTP keys are far below 4 GB
  }

  std::size_t heap_bytes() const { return heap_capacity_; }

 private:
  static constexpr std::size_t kInline = 48;
  std::uint32_t size_ = 0;
  std::uint32_t heap_capacity_ = 0;
  std::unique_ptr<char[]> heap_;
  char inline_[kInline] = {};
};
static_assert(sizeof(StoredKey) == 64);

struct EntryDetail {
  double spike_start = 0;
  std::uint64_t spike_messages = 0;
  std::vector<std::string> domains;  // while rising or spiking
  std::uint32_t active_index = kNone;
};

// A slot of the open-addressing index. The hash is compared before the key, so a probe reads
// a key only when it is very likely the one looked for.
struct Slot {
  std::uint32_t hash = 0;
  std::uint32_t entry = kNone;  // kNone: empty
};

// An entry as EvictionOrder holds it. The score is inline so that ordering reads the nodes
// alone, not the entries (a cache miss each); it may lag behind the entry's (KeyTable::Minimum).
struct EvictionNode {
  double score = 0;
  std::uint32_t entry = kNone;
  std::uint32_t hash = 0;  // the entry's: an eviction's slot is known before the entry is read
};

struct Rates {  // per minute
  double messages = 0;
  double recipients = 0;
  double baseline_messages = 0;
  double baseline_recipients = 0;
};

bool Spiking(const Entry& e) { return e.state == State::kSpiking || e.state == State::kFalling; }

// Hashed once per message and key; the low bits pick the home slot.
std::uint32_t HashKey(std::string_view key) {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(key));
}

// Starts loading the cache line at `p`. The signal fence emits no instruction; without it GCC
// 12 at -O2 drops a prefetch made under a condition as dead code.
void PrefetchLine(const void* p) {
  __builtin_prefetch(p);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Makes room for one more element as push_back would, but never past `limit` elements: a table
// fills up to max_keys and stays there, so doubling past it would only waste memory.
template <typename T>
void GrowForOneMore(std::vector<T>* v, std::size_t limit) {
  if (v->size() < v->capacity()) return;
  v->reserve(std::max(v->size() + 1, std::min<std::size_t>(2 * v->capacity() + 16, limit)));
}

// The entries that may be evicted (all but the spiking ones), ordered to find the one with the
// least score. Each is held once, in one of two parts, by a node whose score is a lower bound of
// the entry's (counting raises an entry's score without telling this; see KeyTable::Minimum):
//
// - a queue of new keys in score order: one comes in at the tail when its score is at least the
//   tail's. A new key's first score, the least score it inherits plus the weight of its first
//   message, which grows with time, nearly always is, so the queue holds new keys in the order
//   they came, and its head is its least;
// - a 4-ary min-heap of the others (keys found recounted at the queue's head, keys whose spike
//   ended), laid out so that the four children of a node fill one cache line.
//
// Under a flood of one-off senders each eviction takes the queue's head and the new key goes to
// its tail, both O(1), where a heap alone would sift every new key from its root to a leaf.
// Nodes leave the middle of the queue (a key that starts spiking) by being marked dead; dead
// nodes are dropped at the head, or all at once when the queue fills its buffer.
class EvictionOrder {
 public:
  explicit EvictionOrder(std::size_t max_entries) : max_entries_(max_entries) {}

  bool empty() const { return heap_size_ == 0 && queue_live_ == 0; }
  bool Contains(std::uint32_t entry) const { return position_[entry] != kNone; }

  // A new entry number, the next one, not held yet.
  void AddEntry() {
    GrowForOneMore(&position_, max_entries_);
    position_.push_back(kNone);
  }

  // A new key's entry: to the queue when in order (nearly always), else to the heap.
  void AddNew(const EvictionNode& node) {
    if (queue_size_ == 0 || QueueAt(queue_size_ - 1).score <= node.score) {
      QueueAppend(node);
    } else {
      HeapPush(node);
    }
  }
  // Any other entry (a spike ended): to the heap, as its score is not in the queue's order and
  // would hold back the new keys after it.
  void Add(const EvictionNode& node) { HeapPush(node); }

  void Remove(std::uint32_t entry) {
    const std::uint32_t at = position_[entry];
    if (at & kQueued) {
      queue_[at & ~kQueued].entry = kNone;  // dead where it is, dropped when it is the head
      position_[entry] = kNone;
      --queue_live_;
    } else {
      HeapRemove(entry);
    }
  }

  // The node with the least score (not empty()).
  const EvictionNode& Least() {
    while (queue_size_ > 0 && QueueAt(0).entry == kNone) QueuePop();
    return LeastInQueue() ? QueueAt(0) : HeapNodeAt(0);
  }
  // The same without dropping dead heads, for prefetching: nullptr when there is none.
  const EvictionNode* PeekLeast() const {
    if (queue_size_ == 0 && heap_size_ == 0) return nullptr;
    const EvictionNode& least = LeastInQueue() ? QueueAt(0) : HeapNodeAt(0);
    return least.entry == kNone ? nullptr : &least;
  }

  // Starts loading the queue a few lines past its head. The head moves by one node an eviction
  // and was written a whole table of evictions ago, long out of cache; the CPU's own prefetcher
  // does not follow a stream this sparse.
  void PrefetchQueue() const {
    if (queue_size_ > kQueueAhead) PrefetchLine(&QueueAt(kQueueAhead));
  }

  // After Least(): its entry has `score`, more than the node says; the node moves to its place.
  void RaiseLeast(double score) {
    if (LeastInQueue()) {
      EvictionNode node = QueueAt(0);
      QueuePop();
      --queue_live_;
      node.score = score;
      HeapPush(node);
    } else {
      HeapNodeAt(0).score = score;
      SiftDown(0);
    }
  }

  // After Least(): drops its node.
  void RemoveLeast() {
    if (LeastInQueue()) {
      position_[QueueAt(0).entry] = kNone;
      QueuePop();
      --queue_live_;
    } else {
      HeapRemove(HeapNodeAt(0).entry);
    }
  }

  // Multiplies every score by `factor` > 0, which keeps both orders.
  void Scale(double factor) {
    for (std::size_t k = 0; k < heap_size_; ++k) HeapNodeAt(k).score *= factor;
    for (std::size_t k = 0; k < queue_size_; ++k) QueueAt(k).score *= factor;
  }

  std::size_t ApproxBytes() const {
    return heap_lines_.capacity() * sizeof(HeapLine) + queue_.capacity() * sizeof(EvictionNode) +
           position_.capacity() * sizeof(std::uint32_t);
  }

 private:
  // position_[entry] is the entry's heap position, kQueued | the index of its node in queue_,
  // or kNone. Both are below 2^31: there are at most 2 × 10,000,000 nodes.
  static constexpr std::uint32_t kQueued = 0x80000000;
  static constexpr std::size_t kQueueAhead = 16;  // nodes: four cache lines

  bool LeastInQueue() const {
    return queue_size_ > 0 && (heap_size_ == 0 || QueueAt(0).score <= HeapNodeAt(0).score);
  }

  // The queue: a ring buffer of queue_size_ nodes from queue_head_; a dead node's entry is
  // kNone.
  std::size_t QueueIndex(std::size_t k) const {
    const std::size_t i = queue_head_ + k;
    return i >= queue_.size() ? i - queue_.size() : i;
  }
  EvictionNode& QueueAt(std::size_t k) { return queue_[QueueIndex(k)]; }
  const EvictionNode& QueueAt(std::size_t k) const { return queue_[QueueIndex(k)]; }

  void QueuePop() {
    if (++queue_head_ == queue_.size()) queue_head_ = 0;
    --queue_size_;
  }

  void QueueAppend(const EvictionNode& node) {
    if (queue_size_ == queue_.size()) QueueMakeRoom();
    const std::size_t at = QueueIndex(queue_size_);
    queue_[at] = node;
    position_[node.entry] = kQueued | static_cast<std::uint32_t>(at);
    ++queue_size_;
    ++queue_live_;
  }

  // Drops the dead nodes when there are many, else grows the buffer (at most to twice the
  // entries, so a full buffer is at least half dead and compacting it is amortised O(1)).
  void QueueMakeRoom() {
    std::vector<EvictionNode> live;
    const bool compact = 2 * queue_live_ <= queue_.size() && !queue_.empty();
    live.reserve(compact
                     ? queue_.size()
                     : std::max<std::size_t>(16, std::min(2 * queue_.size(), 2 * max_entries_)));
    for (std::size_t k = 0; k < queue_size_; ++k) {
      const EvictionNode& node = QueueAt(k);
      if (node.entry == kNone) continue;  // dead
      position_[node.entry] = kQueued | static_cast<std::uint32_t>(live.size());
      live.push_back(node);
    }
    queue_size_ = queue_live_ = live.size();
    queue_head_ = 0;
    live.resize(live.capacity());
    queue_ = std::move(live);
  }

  // The heap: node k is kept at place k + 3 of an array of 4-node lines, so the children of
  // node k (4k+1 .. 4k+4) are line k + 1.
  static constexpr std::size_t kArity = 4;
  struct alignas(64) HeapLine {
    EvictionNode node[kArity];
  };
  static_assert(sizeof(HeapLine) == 64);

  static std::size_t Line(std::size_t k) { return (k + kArity - 1) / kArity; }
  EvictionNode& HeapNodeAt(std::size_t k) {
    return heap_lines_[Line(k)].node[(k + kArity - 1) % kArity];
  }
  const EvictionNode& HeapNodeAt(std::size_t k) const {
    return heap_lines_[Line(k)].node[(k + kArity - 1) % kArity];
  }

  void HeapPush(const EvictionNode& node) {
    if (Line(heap_size_) == heap_lines_.size()) {
      GrowForOneMore(&heap_lines_, Line(max_entries_) + 1);
      heap_lines_.emplace_back();
    }
    ++heap_size_;
    Place(heap_size_ - 1, node);
    SiftUp(heap_size_ - 1);
  }

  void HeapRemove(std::uint32_t entry) {
    const std::size_t at = position_[entry];
    position_[entry] = kNone;
    const EvictionNode last = HeapNodeAt(--heap_size_);
    if (last.entry == entry) return;
    Place(at, last);
    SiftDown(at);
    SiftUp(position_[last.entry]);
  }

  // Both sifts move a hole rather than swap, writing each moved node and its position once.
  void SiftUp(std::size_t at) {
    const EvictionNode node = HeapNodeAt(at);
    while (at > 0) {
      const std::size_t parent = (at - 1) / kArity;
      if (HeapNodeAt(parent).score <= node.score) break;
      Place(at, HeapNodeAt(parent));
      at = parent;
    }
    Place(at, node);
  }

  void SiftDown(std::size_t at) {
    const EvictionNode node = HeapNodeAt(at);
    for (;;) {
      const std::size_t first = kArity * at + 1;
      if (first >= heap_size_) break;
      const std::size_t end = std::min(first + kArity, heap_size_);
      std::size_t least = first;
      for (std::size_t c = first + 1; c < end; ++c) {
        if (HeapNodeAt(c).score < HeapNodeAt(least).score) least = c;
      }
      if (node.score <= HeapNodeAt(least).score) break;
      Place(at, HeapNodeAt(least));
      at = least;
    }
    Place(at, node);
  }

  void Place(std::size_t at, const EvictionNode& node) {
    HeapNodeAt(at) = node;
    position_[node.entry] = static_cast<std::uint32_t>(at);
  }

  std::size_t max_entries_;
  std::vector<HeapLine> heap_lines_;
  std::size_t heap_size_ = 0;
  std::vector<EvictionNode> queue_;  // the ring buffer, all of it in use
  std::size_t queue_head_ = 0;
  std::size_t queue_size_ = 0;  // nodes, dead ones included
  std::size_t queue_live_ = 0;
  std::vector<std::uint32_t> position_;  // by entry number
};

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

// The forward-decay factors of the present, computed once for the four tables rather than by
// each: they share the start, and their landmarks are the same unless a kind had no message
// when the others moved theirs. Each factor is exactly what a table would compute itself.
class SpikeDetector::DecayFactors {
 public:
  DecayFactors(const SpikeSettings& settings, double start) : s_(settings), start_(start) {}

  // e^{(now-L)/τ}, the forward-decay weight of a count made now against landmark L.
  double Forward(double now, double landmark) {
    if (now != forward_now_ || landmark != forward_landmark_) {
      forward_now_ = now;
      forward_landmark_ = landmark;
      forward_ = std::exp((now - landmark) / s_.baseline_seconds);
    }
    return forward_;
  }

  // From forward-decayed counts to a rate per minute: back to `now`, and the bias correction
  // (a decayed count of a constant rate r since start is r·τ·(1 - e^{-age/τ})).
  double Back(double now, double landmark) {
    if (now != back_now_ || landmark != back_landmark_) {
      const double tau = s_.baseline_seconds;
      if (now != warmth_now_) {
        warmth_now_ = now;
        warmth_ = std::max(1 - std::exp(-(now - start_) / tau), s_.short_window_seconds / tau);
      }
      back_now_ = now;
      back_landmark_ = landmark;
      back_ = 60 / (Forward(now, landmark) * tau * warmth_);
    }
    return back_;
  }

 private:
  const SpikeSettings& s_;
  double start_;
  // For the `now` and landmark they were computed for; NaN: none yet.
  static constexpr double kNotYet = std::numeric_limits<double>::quiet_NaN();
  double forward_now_ = kNotYet, forward_landmark_ = kNotYet, forward_ = 1;
  double warmth_now_ = kNotYet, warmth_ = 1;
  double back_now_ = kNotYet, back_landmark_ = kNotYet, back_ = 0;
};

// One kind's entries, numbered densely (a number stays with its entry until evicted, and the
// evicting key takes it over): an open-addressing index from key to number, the order of the
// entries that may be evicted on their Space-Saving score (EvictionOrder, lazy: a key that is
// only counted, never evicted, costs it nothing), and the list of entries whose state is not
// normal. The total's table has one entry, number 0, and no index.
class SpikeDetector::KeyTable {
 public:
  KeyTable(KeyKind kind, const SpikeSettings& settings, double start, DecayFactors* factors)
      : kind_(kind),
        s_(settings),
        start_(start),
        landmark_(start),
        factors_(factors),
        evictable_(kind == KeyKind::kTotal ? 1 : settings.max_keys) {
    if (kind_ == KeyKind::kTotal) {
      entries_.emplace_back();
      keys_.emplace_back();
      details_.emplace_back();
      evictable_.AddEntry();
    }
  }

  // Starts loading what counting a key of this hash is likely to touch, so that the cache
  // misses of the three kinds overlap rather than follow one another: the key's home slot and,
  // once the table is full, the entry a new key would take over, its key and its slot. Under a
  // flood of new keys these misses are most of a message's cost; otherwise they are a few
  // wasted loads.
  void Prefetch(std::uint32_t hash) const {
    if (slots_.empty()) return;
    PrefetchLine(&slots_[hash & mask_]);
    PrefetchVictim();
  }

  // Counts a message of `key` (of hash `hash`, HashKey; both ignored for the total).
  void Count(std::string_view key, std::uint32_t hash, const OutboundMessage& m, double now,
             std::vector<SpikeEvent>* events) {
    bool added = false;
    const std::uint32_t i = kind_ == KeyKind::kTotal ? 0 : FindOrInsert(key, hash, &added);
    if (i == kNone) {
      ++untracked_;
      return;
    }
    Renormalize(now);
    Entry& e = entries_[i];
    // The baseline is fed what leaks out of the short window (a cascade of the two decays), so
    // the seconds the short rate is judged on are not yet part of the baseline it is judged
    // against. The leak happened within about one short window after the last update: weigh
    // it as of then. A new key has nothing to leak: skip the two exp() (the result is the
    // same, exactly).
    if (e.short_messages != 0 || e.short_recipients != 0) {
      const double decay = std::exp(-(now - e.short_time) / s_.short_window_seconds);
      const double leaked_messages = e.short_messages * (1 - decay);
      const double leaked_recipients = e.short_recipients * (1 - decay);
      const double leaked_at = std::min(now, e.short_time + s_.short_window_seconds);
      e.short_messages = e.short_messages * decay + 1;
      e.short_recipients = e.short_recipients * decay + m.recipients;
      if (!Spiking(e)) {  // a flood must not become the normal it is measured against
        const double forward = leaked_at == now
                                   ? Forward(now)
                                   : std::exp((leaked_at - landmark_) / s_.baseline_seconds);
        e.long_messages += forward * leaked_messages;
        e.long_recipients += forward * leaked_recipients;
      }
    } else {
      e.short_messages = 1;
      e.short_recipients = m.recipients;
    }
    e.short_time = now;
    e.score += Forward(now);  // evictable_ is not told: see Minimum
    if (added) {
      evictable_.AddNew({e.score, i, hash});
      PrefetchVictim();  // for the next message, which may well bring a new key too
    }
    if (Spiking(e)) ++details_[i].spike_messages;
    Evaluate(i, now, events);
    if (e.state != State::kNormal) Sample(i, m);
  }

  void Tick(double now, std::vector<SpikeEvent>* events) {
    // Evaluate may take an entry off the active list (swap-remove): walk it backwards.
    for (std::size_t i = active_.size(); i-- > 0;) {
      if (i < active_.size()) Evaluate(active_[i], now, events);
    }
  }

  const Entry* Find(std::string_view key) const {
    if (kind_ == KeyKind::kTotal) return &entries_[0];
    const std::uint32_t i = Lookup(key, HashKey(key));
    return i == kNone ? nullptr : &entries_[i];
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

  KeyRate ToKeyRate(std::uint32_t i, double now) const {
    const Entry& e = entries_[i];
    const Rates r = RatesAt(e, now);
    return {kind_,        std::string(keys_[i].view()), r.messages,
            r.recipients, r.baseline_messages,          r.baseline_recipients,
            Spiking(e)};
  }

  std::vector<KeyRate> Top(std::size_t n, double now) const {
    // Ranks numbers first and builds (copies the key of) the rows shown only: the glue holds
    // its lock meanwhile. Equal rates (quiet keys at 0) come in key order.
    std::vector<std::pair<double, std::uint32_t>> ranked;
    ranked.reserve(entries_.size());
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
      ranked.emplace_back(RatesAt(entries_[i], now).messages, i);
    }
    n = std::min(n, ranked.size());
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n), ranked.end(),
                      [this](const auto& a, const auto& b) {
                        if (a.first != b.first) return a.first > b.first;
                        return keys_[a.second].view() < keys_[b.second].view();
                      });
    std::vector<KeyRate> top;
    top.reserve(n);
    for (std::size_t k = 0; k < n; ++k) top.push_back(ToKeyRate(ranked[k].second, now));
    return top;
  }

  std::size_t tracked() const { return entries_.size(); }
  std::size_t spiking() const { return spiking_; }
  std::uint64_t evicted() const { return evicted_; }
  std::uint64_t untracked() const { return untracked_; }

  std::size_t ApproxBytes() const {
    std::size_t bytes = slots_.capacity() * sizeof(Slot) + entries_.capacity() * sizeof(Entry) +
                        keys_.capacity() * sizeof(StoredKey) +
                        details_.capacity() * sizeof(EntryDetail) + evictable_.ApproxBytes() +
                        active_.capacity() * sizeof(std::uint32_t);
    for (const StoredKey& key : keys_) bytes += key.heap_bytes();
    for (const EntryDetail& d : details_) {
      for (const std::string& domain : d.domains) bytes += sizeof(std::string) + domain.capacity();
    }
    return bytes;
  }

 private:
  double Forward(double now) const { return factors_->Forward(now, landmark_); }
  double Back(double now) const { return factors_->Back(now, landmark_); }

  void PrefetchVictim() const {
    if (entries_.size() < s_.max_keys) return;
    const EvictionNode* least = evictable_.PeekLeast();
    if (least == nullptr) return;
    PrefetchLine(&entries_[least->entry]);
    PrefetchLine(&keys_[least->entry]);
    PrefetchLine(&slots_[least->hash & mask_]);
    evictable_.PrefetchQueue();
  }

  std::uint32_t Lookup(std::string_view key, std::uint32_t hash) const {
    if (slots_.empty()) return kNone;
    for (std::size_t s = hash & mask_;; s = (s + 1) & mask_) {
      const Slot& slot = slots_[s];
      if (slot.entry == kNone) return kNone;
      if (slot.hash == hash && keys_[slot.entry].view() == key) return slot.entry;
    }
  }

  // The entry of `key`, a new one (taking over the least entry's number when the table is
  // full; `*added` is then set), or kNone when the table is full of spiking entries.
  std::uint32_t FindOrInsert(std::string_view key, std::uint32_t hash, bool* added) {
    if (const std::uint32_t i = Lookup(key, hash); i != kNone) return i;
    if (entries_.size() >= s_.max_keys) {
      if (evictable_.empty()) return kNone;  // every entry spikes: never evict one
      const std::uint32_t victim = Minimum();
      evictable_.RemoveLeast();
      Entry& e = entries_[victim];
      // A normal entry's detail holds nothing for its successor (no domains, not active; the
      // spike fields are set when a spike starts): leave that cache line alone.
      if (e.state != State::kNormal) {  // rising
        ActiveRemove(victim);
        details_[victim].domains = {};
      }
      EraseSlot(victim);
      ++evicted_;
      // The new key inherits the victim's count as its error (Count adds it to evictable_).
      const double inherited = e.score;
      e = Entry{};
      e.score = inherited;
      e.hash = hash;
      keys_[victim].assign(key);
      InsertSlot(victim, hash);
      *added = true;
      return victim;
    }
    const auto i = static_cast<std::uint32_t>(entries_.size());
    GrowForOneMore(&entries_, s_.max_keys);
    GrowForOneMore(&keys_, s_.max_keys);
    GrowForOneMore(&details_, s_.max_keys);
    entries_.emplace_back().hash = hash;
    keys_.emplace_back(key);
    details_.emplace_back();
    evictable_.AddEntry();
    *added = true;
    InsertSlot(i, hash);
    return i;
  }

  // Linear probing, at most half full: a miss (the common case under a flood of new keys)
  // usually ends within the cache line it started in.
  void InsertSlot(std::uint32_t entry, std::uint32_t hash) {
    if (2 * (occupied_ + 1) > slots_.size()) Rehash(std::max<std::size_t>(64, 2 * slots_.size()));
    std::size_t s = hash & mask_;
    while (slots_[s].entry != kNone) s = (s + 1) & mask_;
    slots_[s] = {hash, entry};
    ++occupied_;
  }

  // Backward-shift deletion (Knuth's algorithm R): the slots after the hole in the same run
  // move into it when it lies on their probe path, so there are no tombstones to fill the
  // index under a churn of keys.
  void EraseSlot(std::uint32_t entry) {
    std::size_t hole = entries_[entry].hash & mask_;
    while (slots_[hole].entry != entry) hole = (hole + 1) & mask_;
    for (std::size_t s = (hole + 1) & mask_; slots_[s].entry != kNone; s = (s + 1) & mask_) {
      const std::size_t home = slots_[s].hash & mask_;
      if (((s - home) & mask_) >= ((s - hole) & mask_)) {
        slots_[hole] = slots_[s];
        hole = s;
      }
    }
    slots_[hole] = Slot{};
    --occupied_;
  }

  void Rehash(std::size_t size) {
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(size));
    mask_ = size - 1;
    for (const Slot& slot : old) {
      if (slot.entry == kNone) continue;
      std::size_t s = slot.hash & mask_;
      while (slots_[s].entry != kNone) s = (s + 1) & mask_;
      slots_[s] = slot;
    }
  }

  void Sample(std::uint32_t i, const OutboundMessage& m) {
    std::vector<std::string>& domains = details_[i].domains;
    for (std::string_view d : m.recipient_domains) {
      if (domains.size() >= s_.domain_sample) return;
      if (std::find(domains.begin(), domains.end(), d) == domains.end()) domains.emplace_back(d);
    }
  }

  void Evaluate(std::uint32_t i, double now, std::vector<SpikeEvent>* events) {
    Entry& e = entries_[i];
    const Rates r = RatesAt(e, now);
    const double threshold_m =
        std::max(s_.min_messages_per_minute,
                 s_.factor * std::max(r.baseline_messages, s_.floor_messages_per_minute));
    const double threshold_r =
        std::max(s_.min_recipients_per_minute,
                 s_.factor * std::max(r.baseline_recipients, s_.floor_recipients_per_minute));
    const bool above = r.messages >= threshold_m || r.recipients >= threshold_r;
    const bool below =
        r.messages < s_.end_ratio * threshold_m && r.recipients < s_.end_ratio * threshold_r;
    switch (e.state) {
      case State::kNormal:
        if (above) SetState(i, State::kRising, now);
        break;
      case State::kRising:
        if (!above) {
          SetState(i, State::kNormal, now);
        } else if (now - e.state_since >= s_.hold_seconds && now - start_ >= s_.learning_seconds) {
          SetState(i, State::kSpiking, now);
          details_[i].spike_start = now;
          details_[i].spike_messages = 0;
          ++spiking_;
          if (evictable_.Contains(i)) evictable_.Remove(i);
          events->push_back(Event(i, r, true, now));
        }
        break;
      case State::kSpiking:
        if (below) SetState(i, State::kFalling, now);
        break;
      case State::kFalling:
        if (!below) {
          e.state = State::kSpiking;  // back up: the spike goes on
        } else if (now - e.state_since >= s_.end_hold_seconds) {
          events->push_back(Event(i, r, false, now));
          --spiking_;
          SetState(i, State::kNormal, now);
          if (kind_ != KeyKind::kTotal) evictable_.Add({e.score, i, e.hash});
        }
        break;
    }
  }

  SpikeEvent Event(std::uint32_t i, const Rates& r, bool started, double now) const {
    const EntryDetail& d = details_[i];
    SpikeEvent ev;
    ev.started = started;
    ev.kind = kind_;
    ev.key = keys_[i].view();
    ev.messages_per_minute = r.messages;
    ev.recipients_per_minute = r.recipients;
    ev.baseline_messages_per_minute = r.baseline_messages;
    ev.baseline_recipients_per_minute = r.baseline_recipients;
    ev.recipient_domains = d.domains;
    ev.since_seconds = d.spike_start;
    if (!started) {
      ev.duration_seconds = now - d.spike_start;
      ev.messages = d.spike_messages;
    }
    return ev;
  }

  void SetState(std::uint32_t i, State s, double now) {
    entries_[i].state = s;
    entries_[i].state_since = now;
    EntryDetail& d = details_[i];
    if (s == State::kNormal) {
      d.domains.clear();
      d.domains.shrink_to_fit();
      if (d.active_index != kNone) ActiveRemove(i);
    } else if (d.active_index == kNone) {
      d.active_index = static_cast<std::uint32_t>(active_.size());
      active_.push_back(i);
    }
  }

  void ActiveRemove(std::uint32_t i) {
    const std::uint32_t at = details_[i].active_index;
    active_[at] = active_.back();
    details_[active_[at]].active_index = at;
    active_.pop_back();
    details_[i].active_index = kNone;
  }

  // Moves the landmark forward before forward-decayed counts could overflow. Scaling every
  // score, evictable_'s included, by one factor keeps their order and its lower bounds.
  void Renormalize(double now) {
    const double exponent = (now - landmark_) / s_.baseline_seconds;
    if (exponent < kMaxForwardExponent) return;
    const double scale = std::exp(-exponent);
    for (Entry& e : entries_) {
      e.long_messages *= scale;
      e.long_recipients *= scale;
      e.score *= scale;
    }
    evictable_.Scale(scale);
    landmark_ = now;
  }

  // The evictable entry with the least score. Invariant: each node's score is at most its
  // entry's. Once the least node's score is its entry's own, that entry's score is at most
  // every node's, so at most every entry's; until then, bring that node up to date (which moves
  // it). Each stale node moves once, then is current until counted again.
  std::uint32_t Minimum() {
    for (;;) {
      const EvictionNode& least = evictable_.Least();
      const double score = entries_[least.entry].score;
      if (least.score == score) return least.entry;
      evictable_.RaiseLeast(score);
    }
  }

  KeyKind kind_;
  const SpikeSettings& s_;
  double start_;
  double landmark_;
  DecayFactors* factors_;  // the detector's; a cache, so const queries use it too
  // By entry number: the hot part, the key, the rest.
  std::vector<Entry> entries_;
  std::vector<StoredKey> keys_;
  std::vector<EntryDetail> details_;
  std::vector<Slot> slots_;  // a power of two in size, or empty
  std::size_t mask_ = 0;
  std::size_t occupied_ = 0;
  EvictionOrder evictable_;
  std::vector<std::uint32_t> active_;
  std::size_t spiking_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t untracked_ = 0;
};

SpikeDetector::SpikeDetector(const SpikeSettings& settings, double now)
    : settings_(settings),
      start_(now),
      last_now_(now),
      factors_(std::make_unique<DecayFactors>(settings_, start_)) {
  for (std::size_t k = 0; k < kKeyKindCount; ++k) {
    tables_[k] =
        std::make_unique<KeyTable>(static_cast<KeyKind>(k), settings_, start_, factors_.get());
  }
}

SpikeDetector::~SpikeDetector() = default;

void SpikeDetector::OnMessage(const OutboundMessage& m, double now) {
  now = std::max(now, last_now_);
  last_now_ = now;
  // Each key is hashed once; all three tables are prefetched before any is counted.
  struct Keyed {
    KeyKind kind;
    bool on;
    std::string_view key;
    std::uint32_t hash = 0;
  };
  std::array<Keyed, 3> keyed = {
      {{KeyKind::kSaslLogin, settings_.by_sasl_login, m.sasl_login},
       {KeyKind::kClientIp, settings_.by_client_ip, m.client_ip},
       {KeyKind::kSenderDomain, settings_.by_sender_domain, m.sender_domain}}};
  for (Keyed& k : keyed) {
    k.on = k.on && !k.key.empty();
    if (!k.on) continue;
    k.hash = HashKey(k.key);
    tables_[static_cast<std::size_t>(k.kind)]->Prefetch(k.hash);
  }
  for (const Keyed& k : keyed) {
    if (k.on) tables_[static_cast<std::size_t>(k.kind)]->Count(k.key, k.hash, m, now, &events_);
  }
  tables_[static_cast<std::size_t>(KeyKind::kTotal)]->Count({}, 0, m, now, &events_);
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
  return tables_[static_cast<std::size_t>(KeyKind::kTotal)]->ToKeyRate(0, now);
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
