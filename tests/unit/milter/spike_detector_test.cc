// SpikeDetector replayed against synthetic traffic with an injected clock: normal traffic and
// a daily ramp never fire; a 10x jump, a new account's burst and a flood during an attack by a
// million distinct senders are caught within 10 s; memory stays bounded; hysteresis holds.
#include "milter/core/spike_detector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace mailpulse {
namespace {

constexpr double kHour = 3600;

struct Sender {
  std::string login, ip, domain;
  double per_minute;  // mean rate at multiplier 1
};

struct Arrival {
  double t;
  std::size_t sender;
};

// A replay: senders with Poisson arrivals whose rate is per_minute × multiplier(t), ticked
// once a second, every event kept with the time it came out.
class Replay {
 public:
  explicit Replay(SpikeSettings settings = {}, unsigned seed = 42)
      : settings_(settings), detector_(settings_, 0), rng_(seed) {}

  std::size_t Add(Sender s) {
    senders_.push_back(std::move(s));
    return senders_.size() - 1;
  }

  // Poisson arrivals of `sender` over [from, to) by thinning at the peak multiplier.
  void Poisson(std::size_t sender, double from, double to,
               const std::function<double(double)>& multiplier, double peak = 1) {
    const double rate = senders_[sender].per_minute / 60 * peak;
    if (rate <= 0) return;
    std::exponential_distribution<double> gap(rate);
    std::uniform_real_distribution<double> u(0, 1);
    for (double t = from + gap(rng_); t < to; t += gap(rng_)) {
      if (u(rng_) * peak <= multiplier(t)) arrivals_.push_back({t, sender});
    }
    sorted_ = false;
  }
  void Steady(std::size_t sender, double from, double to) {
    Poisson(sender, from, to, [](double) { return 1.0; });
  }
  // Evenly spaced messages, as a spam script sends them.
  void Regular(std::size_t sender, double from, double to, double per_second) {
    for (double t = from; t < to; t += 1 / per_second) arrivals_.push_back({t, sender});
    sorted_ = false;
  }

  // Runs what was added, in time order, up to `until` (later arrivals wait for the next call).
  void Run(double until) {
    if (!sorted_) {
      arrivals_.erase(arrivals_.begin(), arrivals_.begin() + static_cast<std::ptrdiff_t>(next_));
      next_ = 0;
      std::sort(arrivals_.begin(), arrivals_.end(),
                [](const Arrival& a, const Arrival& b) { return a.t < b.t; });
      sorted_ = true;
    }
    for (; next_ < arrivals_.size() && arrivals_[next_].t <= until; ++next_) {
      const Arrival& a = arrivals_[next_];
      TickUpTo(a.t);
      const Sender& s = senders_[a.sender];
      OutboundMessage m;
      m.sasl_login = s.login;
      m.client_ip = s.ip;
      m.sender_domain = s.domain;
      m.recipients = 1;
      m.recipient_domains = {"gmail.com"};
      detector_.OnMessage(m, a.t);
      Collect(a.t);
    }
    TickUpTo(until);
  }

  // One message of its own at t, after everything added that comes before it.
  void Message(const OutboundMessage& m, double t) {
    Run(t);
    detector_.OnMessage(m, t);
    Collect(t);
  }

  struct Seen {
    double t;
    SpikeEvent event;
  };
  std::vector<Seen> events;

  std::optional<Seen> First(KeyKind kind, const std::string& key, bool started = true) const {
    for (const Seen& s : events) {
      if (s.event.kind == kind && s.event.key == key && s.event.started == started) return s;
    }
    return std::nullopt;
  }
  std::string Describe() const {
    std::string out;
    for (const Seen& s : events) {
      char line[256];
      std::snprintf(line, sizeof line, "  t=%.1f %s %s %s rate %.1f/min baseline %.1f/min\n", s.t,
                    s.event.started ? "started" : "ended",
                    std::string(KeyKindName(s.event.kind)).c_str(), s.event.key.c_str(),
                    s.event.messages_per_minute, s.event.baseline_messages_per_minute);
      out += line;
    }
    return out.empty() ? "  (no events)\n" : out;
  }

  SpikeDetector& detector() { return detector_; }
  std::mt19937_64& rng() { return rng_; }

 private:
  void TickUpTo(double t) {
    while (next_tick_ <= t) {
      detector_.Tick(next_tick_);
      Collect(next_tick_);
      next_tick_ += 1;
    }
  }
  void Collect(double t) {
    for (SpikeEvent& e : detector_.TakeEvents()) events.push_back({t, std::move(e)});
  }

  SpikeSettings settings_;
  SpikeDetector detector_;
  std::mt19937_64 rng_;
  std::vector<Sender> senders_;
  std::vector<Arrival> arrivals_;
  std::size_t next_ = 0;  // arrivals_ before this one have run
  bool sorted_ = true;
  double next_tick_ = 1;
};

// 1,000 accounts behind 200 client addresses in 20 sender domains: most send 1 to 60 messages
// an hour (log-uniform), 20 are applications sending 2 to 20 a minute.
std::vector<std::size_t> Accounts(Replay* r, std::size_t n = 1000) {
  std::vector<std::size_t> ids;
  std::uniform_real_distribution<double> log_rate(std::log(1.0 / 60), std::log(1.0));
  std::uniform_real_distribution<double> app_rate(2, 20);
  for (std::size_t i = 0; i < n; ++i) {
    const double per_minute = i % 50 == 0 ? app_rate(r->rng()) : std::exp(log_rate(r->rng()));
    ids.push_back(
        r->Add({"user" + std::to_string(i) + "@example.org", "192.0.2." + std::to_string(i % 200),
                "d" + std::to_string(i % 20) + ".example", per_minute}));
  }
  return ids;
}

TEST(SpikeDetectorReplayTest, SteadyTrafficFromAThousandAccountsNeverFires) {
  Replay r;
  for (std::size_t id : Accounts(&r)) r.Steady(id, 0, 6 * kHour);
  r.Run(6 * kHour);
  EXPECT_TRUE(r.events.empty()) << r.Describe();
  EXPECT_EQ(r.detector().tracked(KeyKind::kSaslLogin), 1000u);
  EXPECT_EQ(r.detector().tracked(KeyKind::kClientIp), 200u);
  EXPECT_EQ(r.detector().evicted(KeyKind::kSaslLogin), 0u);
}

TEST(SpikeDetectorReplayTest, ADailyRampOfTenTimesDoesNotFire) {
  // Night at a tenth of the day's rate; the morning ramp takes 3 hours, the evening 4.
  auto day = [](double t) {
    const double h = std::fmod(t / kHour, 24);
    if (h < 6) return 0.1;
    if (h < 9) return 0.1 + 0.9 * (h - 6) / 3;
    if (h < 17) return 1.0;
    if (h < 21) return 1.0 - 0.9 * (h - 17) / 4;
    return 0.1;
  };
  Replay r;
  for (std::size_t id : Accounts(&r)) r.Poisson(id, 0, 30 * kHour, day);
  r.Run(30 * kHour);
  EXPECT_TRUE(r.events.empty()) << r.Describe();
}

TEST(SpikeDetectorReplayTest, AnAccountJumpingToTenTimesItsRateIsCaughtWithinTenSeconds) {
  Replay r;
  for (std::size_t id : Accounts(&r, 300)) r.Steady(id, 0, 3 * kHour);
  // A shop's web application sends 12 messages a minute (a fifth of the absolute minimum of a
  // spike, 60), then ten times that.
  const std::size_t x = r.Add({"shop@example.net", "198.51.100.7", "example.net", 12});
  const double jump = 2 * kHour;
  r.Regular(x, 0, jump, 12.0 / 60);
  r.Regular(x, jump, jump + 600, 120.0 / 60);  // ten minutes at ten times its rate
  r.Regular(x, jump + 600, 3 * kHour, 12.0 / 60);
  r.Run(3 * kHour);

  for (KeyKind kind : {KeyKind::kSaslLogin, KeyKind::kClientIp, KeyKind::kSenderDomain}) {
    const std::string key = kind == KeyKind::kSaslLogin  ? "shop@example.net"
                            : kind == KeyKind::kClientIp ? "198.51.100.7"
                                                         : "example.net";
    const auto started = r.First(kind, key);
    ASSERT_TRUE(started) << KeyKindName(kind) << "\n" << r.Describe();
    EXPECT_GT(started->t, jump);
    EXPECT_LT(started->t - jump, 10) << KeyKindName(kind);
    EXPECT_NEAR(started->event.baseline_messages_per_minute, 12, 3);
    EXPECT_GE(started->event.messages_per_minute, 60);
    EXPECT_THAT(started->event.recipient_domains, ::testing::ElementsAre("gmail.com"));
    const auto ended = r.First(kind, key, false);
    ASSERT_TRUE(ended) << r.Describe();
    EXPECT_GT(ended->t, jump + 600);
    EXPECT_LT(ended->t, jump + 600 + 60);
    EXPECT_NEAR(ended->event.duration_seconds, 600, 60);
    EXPECT_NEAR(static_cast<double>(ended->event.messages), 1200, 60);
  }
  EXPECT_EQ(r.events.size(), 6u) << r.Describe();  // nothing else, the total included
}

TEST(SpikeDetectorReplayTest, ASlowCreepIsFollowedNotFlagged) {
  Replay r;
  for (std::size_t id : Accounts(&r, 300)) r.Steady(id, 0, 7 * kHour);
  const std::size_t x = r.Add({"creep@example.net", "198.51.100.8", "example.net", 50});
  // From 5 to 50 messages a minute over six hours, after an hour at 5.
  r.Poisson(x, 0, 7 * kHour, [](double t) {
    return t < kHour ? 0.1 : 0.1 + 0.9 * std::min(1.0, (t - kHour) / (6 * kHour));
  });
  r.Run(7 * kHour);
  EXPECT_TRUE(r.events.empty()) << r.Describe();
  // It is there for an operator to see: the top sender, with a baseline that followed it.
  const std::vector<KeyRate> top = r.detector().Top(KeyKind::kSaslLogin, 3, 7 * kHour);
  ASSERT_FALSE(top.empty());
  EXPECT_EQ(top[0].key, "creep@example.net");
  EXPECT_NEAR(top[0].baseline_messages_per_minute, 45, 10);
  EXPECT_FALSE(top[0].spiking);
}

TEST(SpikeDetectorReplayTest, ANewAccountSendingABurstIsCaughtWithinTenSeconds) {
  Replay r;
  for (std::size_t id : Accounts(&r, 300)) r.Steady(id, 0, 3 * kHour);
  const std::size_t x = r.Add({"new@example.org", "203.0.113.9", "d1.example", 0});
  const double burst = 2 * kHour;
  r.Regular(x, burst, burst + 50, 3);  // 150 messages in 50 s
  r.Run(3 * kHour);
  const auto started = r.First(KeyKind::kSaslLogin, "new@example.org");
  ASSERT_TRUE(started) << r.Describe();
  EXPECT_LT(started->t - burst, 10);
  EXPECT_LT(started->event.baseline_messages_per_minute, 1);
  EXPECT_TRUE(r.First(KeyKind::kSaslLogin, "new@example.org", false));
}

TEST(SpikeDetectorReplayTest, AMillionDistinctSendersStayBoundedAndNeverEvictASpike) {
  SpikeSettings settings;
  Replay r(settings);
  // Before the attack: normal traffic, one heavy legitimate domain, and a flood from
  // bad.example that has been going on for a minute.
  for (std::size_t id : Accounts(&r, 300)) r.Steady(id, 0, 2 * kHour);
  const std::size_t big = r.Add({"", "198.51.100.20", "big.example", 10});
  r.Steady(big, 0, 2 * kHour);
  const std::size_t bad = r.Add({"", "198.51.100.66", "bad.example", 0});
  const double attack = kHour;
  r.Regular(bad, attack - 60, attack + 3600, 2);
  r.Run(attack);
  ASSERT_TRUE(r.First(KeyKind::kSenderDomain, "bad.example")) << r.Describe();

  // Then a million messages, each from a sender domain and a client address never seen
  // again, over 50 minutes (333 a second).
  std::uniform_int_distribution<std::uint64_t> any;
  char domain[40], ip[40];
  for (int i = 0; i < 1000000; ++i) {
    const double t = attack + i * 0.003;
    const std::uint64_t n = any(r.rng());
    std::snprintf(domain, sizeof domain, "x%016llx.example", static_cast<unsigned long long>(n));
    std::snprintf(ip, sizeof ip, "10.%u.%u.%u", static_cast<unsigned>(n >> 40 & 255),
                  static_cast<unsigned>(n >> 48 & 255), static_cast<unsigned>(n >> 56));
    OutboundMessage m;
    m.client_ip = ip;
    m.sender_domain = domain;
    m.recipient_domains = {"example.com"};
    r.Message(m, t);
  }
  r.Run(attack + 3000);

  SpikeDetector& d = r.detector();
  EXPECT_LE(d.tracked(KeyKind::kSenderDomain), settings.max_keys);
  EXPECT_LE(d.tracked(KeyKind::kClientIp), settings.max_keys);
  EXPECT_GT(d.evicted(KeyKind::kSenderDomain), 900000u);
  EXPECT_LT(d.ApproxBytes(), 64u << 20) << d.ApproxBytes();
  // The spiking domain was never forgotten and its spike never ended; the heavy legitimate
  // domain kept its entry (its decayed count is far above the table's minimum).
  EXPECT_FALSE(r.First(KeyKind::kSenderDomain, "bad.example", false)) << r.Describe();
  EXPECT_EQ(d.spiking(KeyKind::kSenderDomain), 1u);
  EXPECT_GT(d.MessagesPerMinute(KeyKind::kSenderDomain, "bad.example", attack + 3000), 100);
  EXPECT_GT(d.MessagesPerMinute(KeyKind::kSenderDomain, "big.example", attack + 3000), 0);
  // No one-off sender is a spike, but the total flood is.
  for (const auto& seen : r.events) {
    EXPECT_TRUE(seen.event.key == "bad.example" || seen.event.key == "198.51.100.66" ||
                seen.event.kind == KeyKind::kTotal)
        << r.Describe();
  }
  EXPECT_TRUE(r.First(KeyKind::kTotal, ""));
}

TEST(SpikeDetectorTest, ASpikeEndsOnlyAfterStayingLowForTheEndHold) {
  SpikeSettings s;
  s.learning_seconds = 0;
  Replay r(s);
  const std::size_t x = r.Add({"x@example.org", "", "", 0});
  r.Regular(x, 100, 400, 2);  // 120 a minute: a spike
  r.Regular(x, 420, 700, 2);  // a 20 s pause: shorter than the end hold, no end
  r.Run(800);
  std::size_t starts = 0, ends = 0;
  for (const auto& seen : r.events) {
    if (seen.event.kind != KeyKind::kSaslLogin) continue;
    (seen.event.started ? starts : ends) += 1;
  }
  EXPECT_EQ(starts, 1u) << r.Describe();
  EXPECT_EQ(ends, 1u) << r.Describe();
  const auto ended = r.First(KeyKind::kSaslLogin, "x@example.org", false);
  ASSERT_TRUE(ended);
  EXPECT_GT(ended->t, 700 + s.end_hold_seconds);
}

TEST(SpikeDetectorTest, AFloodSoonAfterTheStartIsNotItsOwnBaseline) {
  // The baseline takes what leaks out of the short window: 60 messages in 4 s, 30 s after
  // the start (and no learning period), are a spike, not the normal of a young detector.
  SpikeSettings s;
  s.learning_seconds = 0;
  SpikeDetector d(s, 0);
  OutboundMessage m;
  m.sasl_login = "flood@example.org";
  bool started = false;
  for (int i = 0; i < 60 && !started; ++i) {
    d.OnMessage(m, 30 + i / 15.0);
    d.Tick(30 + i / 15.0);
    for (const SpikeEvent& e : d.TakeEvents()) started |= e.kind == KeyKind::kSaslLogin;
  }
  EXPECT_TRUE(started);
}

TEST(SpikeDetectorTest, NothingStartsWhileLearning) {
  SpikeSettings s;
  s.learning_seconds = 300;
  Replay r(s);
  const std::size_t x = r.Add({"x@example.org", "", "", 0});
  r.Regular(x, 10, 60, 5);
  r.Run(600);
  EXPECT_TRUE(r.events.empty()) << r.Describe();
}

TEST(SpikeDetectorTest, ARecipientFloodInFewMessagesIsASpike) {
  SpikeSettings s;
  s.learning_seconds = 0;
  SpikeDetector d(s, 0);
  OutboundMessage m;
  m.sasl_login = "list@example.org";
  m.recipients = 200;  // 10 messages of 200 recipients in 5 s: 12,000 recipients a minute
  for (int i = 0; i < 10; ++i) d.OnMessage(m, 1000 + i * 0.5);
  d.Tick(1003);
  d.Tick(1007);
  const std::vector<SpikeEvent> events = d.TakeEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].kind, KeyKind::kSaslLogin);
  EXPECT_GT(events[0].recipients_per_minute, s.min_recipients_per_minute);
  EXPECT_LT(events[0].messages_per_minute, s.min_messages_per_minute);
}

TEST(SpikeDetectorTest, DisabledKindsAndEmptyKeysAreNotTracked) {
  SpikeSettings s;
  s.by_client_ip = false;
  SpikeDetector d(s, 0);
  OutboundMessage m;
  m.client_ip = "192.0.2.1";
  m.sender_domain = "example.org";
  d.OnMessage(m, 1);
  EXPECT_EQ(d.tracked(KeyKind::kClientIp), 0u);
  EXPECT_EQ(d.tracked(KeyKind::kSaslLogin), 0u);  // no login given
  EXPECT_EQ(d.tracked(KeyKind::kSenderDomain), 1u);
  EXPECT_GT(d.Total(1).messages_per_minute, 0);
}

TEST(SpikeDetectorTest, TopListsTheBusiestFirst) {
  SpikeDetector d(SpikeSettings{}, 0);
  for (int i = 0; i < 3; ++i) {
    OutboundMessage m;
    const std::string login = "u" + std::to_string(i);
    m.sasl_login = login;
    for (int k = 0; k <= i * 5; ++k) d.OnMessage(m, 10 + k * 0.1);
  }
  const std::vector<KeyRate> top = d.Top(KeyKind::kSaslLogin, 2, 12);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, "u2");
  EXPECT_EQ(top[1].key, "u1");
  EXPECT_GT(top[0].messages_per_minute, top[1].messages_per_minute);
  EXPECT_GT(d.MessagesPerMinute(KeyKind::kSaslLogin, "u2", 12), 0);
  EXPECT_EQ(d.MessagesPerMinute(KeyKind::kSaslLogin, "nobody", 12), 0);
}

TEST(SpikeDetectorTest, AFullTableEvictsTheLeastCountedKeyLongKeysIncluded) {
  // Keys past the inline buffer of an entry are stored apart; eviction and lookup treat them
  // the same. With room for two keys, a third replaces the one with the smaller decayed count
  // and inherits it, so the next newcomer replaces the third, not the busy first key.
  SpikeSettings s;
  s.max_keys = 2;
  SpikeDetector d(s, 0);
  const std::string busy(300, 'a');
  const std::string quiet = std::string(100, 'b') + "@example.org";
  OutboundMessage m;
  m.sasl_login = busy;
  for (double t : {1.0, 2.0, 2.5}) d.OnMessage(m, t);
  m.sasl_login = quiet;
  d.OnMessage(m, 3);
  m.sasl_login = "short";
  d.OnMessage(m, 4);
  EXPECT_EQ(d.evicted(KeyKind::kSaslLogin), 1u);
  EXPECT_EQ(d.MessagesPerMinute(KeyKind::kSaslLogin, quiet, 4), 0);
  m.sasl_login = quiet;
  d.OnMessage(m, 5);
  EXPECT_EQ(d.evicted(KeyKind::kSaslLogin), 2u);
  EXPECT_EQ(d.MessagesPerMinute(KeyKind::kSaslLogin, "short", 5), 0);
  EXPECT_GT(d.MessagesPerMinute(KeyKind::kSaslLogin, busy, 5), 0);
  EXPECT_GT(d.MessagesPerMinute(KeyKind::kSaslLogin, quiet, 5), 0);
  const std::vector<KeyRate> top = d.Top(KeyKind::kSaslLogin, 2, 5);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, busy);
  EXPECT_EQ(top[1].key, quiet);
}

TEST(SpikeDetectorTest, WhenEveryEntrySpikesNewKeysAreUntracked) {
  SpikeSettings s;
  s.learning_seconds = 0;
  s.max_keys = 2;
  SpikeDetector d(s, 0);
  for (int i = 0; i < 40; ++i) {
    for (const char* login : {"a", "b"}) {
      OutboundMessage m;
      m.sasl_login = login;
      d.OnMessage(m, 100 + i * 0.25);
    }
  }
  d.Tick(110);
  ASSERT_EQ(d.spiking(KeyKind::kSaslLogin), 2u);
  OutboundMessage m;
  m.sasl_login = "c";
  d.OnMessage(m, 110);
  EXPECT_EQ(d.untracked(KeyKind::kSaslLogin), 1u);
  EXPECT_EQ(d.evicted(KeyKind::kSaslLogin), 0u);
  EXPECT_EQ(d.spiking(KeyKind::kSaslLogin), 2u);
}

}  // namespace
}  // namespace mailpulse
