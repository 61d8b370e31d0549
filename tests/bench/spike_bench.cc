// The spike detector's cost per message and its memory with 10,000 and 1,000,000 distinct
// keys (every message's login, client address and sender domain drawn from that many), next
// to the floor of the same key lookups in a plain hash map; and the detection time of a 10x
// spike with the default settings, replayed with an injected clock (a figure, not a timing).
//
//   build/tests/bench/spike_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "milter/core/spike_detector.h"

namespace mailpulse {
namespace {

struct Keys {
  std::vector<std::string> logins, ips, domains;
  std::vector<std::uint32_t> order;  // the key index of each message, random
};

const Keys& MakeKeys(std::size_t n) {
  static std::unordered_map<std::size_t, Keys> cache;
  Keys& k = cache[n];
  if (!k.order.empty()) return k;
  char buf[64];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "user%07zu@example.org", i);
    k.logins.emplace_back(buf);
    std::snprintf(buf, sizeof buf, "10.%zu.%zu.%zu", i >> 16 & 255, i >> 8 & 255, i & 255);
    k.ips.emplace_back(buf);
    std::snprintf(buf, sizeof buf, "d%07zu.example", i);
    k.domains.emplace_back(buf);
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> pick(0, static_cast<std::uint32_t>(n - 1));
  k.order.resize(1 << 22);
  for (std::uint32_t& o : k.order) o = pick(rng);
  return k;
}

long RssBytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4096;
}

// One message: three keys and the total, 1,000 messages a second of detector time.
void BM_SpikeDetectorPerMessage(benchmark::State& state) {
  const Keys& k = MakeKeys(static_cast<std::size_t>(state.range(0)));
  const long rss_before = RssBytes();
  SpikeDetector d(SpikeSettings{}, 0);
  OutboundMessage m;
  m.recipient_domains = {"gmail.com"};
  std::size_t i = 0;
  double now = 0;
  for (auto _ : state) {
    const std::uint32_t key = k.order[i++ & (k.order.size() - 1)];
    m.sasl_login = k.logins[key];
    m.client_ip = k.ips[key];
    m.sender_domain = k.domains[key];
    now += 0.001;
    d.OnMessage(m, now);
    if ((i & 1023) == 0) {
      d.Tick(now);
      benchmark::DoNotOptimize(d.TakeEvents());
    }
  }
  state.counters["tracked_per_kind"] = static_cast<double>(d.tracked(KeyKind::kSenderDomain));
  state.counters["detector_bytes"] = static_cast<double>(d.ApproxBytes());
  state.counters["rss_growth_bytes"] = static_cast<double>(RssBytes() - rss_before);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpikeDetectorPerMessage)->Arg(10000)->Arg(1000000);

// The floor: the same three lookups (and inserts) in a plain map, without any logic.
void BM_HashLookupFloor(benchmark::State& state) {
  const Keys& k = MakeKeys(static_cast<std::size_t>(state.range(0)));
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, double, Hash, std::equal_to<>> maps[3];
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint32_t key = k.order[i++ & (k.order.size() - 1)];
    for (int t = 0; t < 3; ++t) {
      const std::string& s = t == 0 ? k.logins[key] : t == 1 ? k.ips[key] : k.domains[key];
      auto it = maps[t].find(std::string_view(s));
      if (it == maps[t].end()) it = maps[t].try_emplace(s, 0).first;
      it->second += 1;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HashLookupFloor)->Arg(10000)->Arg(1000000);

// A 10x spike with the defaults: a web application sending 12 messages a minute for two hours
// (beside 300 quieter accounts) jumps to 120 a minute; the figure is the seconds from the jump
// to the spike-started event for its login.
void BM_DetectionTimeOfATenTimesSpike(benchmark::State& state) {
  double detection = -1;
  for (auto _ : state) {
    SpikeDetector d(SpikeSettings{}, 0);
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> gap(300 * 0.25 / 60);  // 300 accounts, 0.25/min each
    std::uniform_int_distribution<int> who(0, 299);
    const double jump = 7200;
    double background = gap(rng), app = 0, tick = 1;
    detection = -1;
    while (detection < 0 && app < jump + 60) {
      const bool app_next = app <= background;
      const double t = app_next ? app : background;
      for (; tick <= t; tick += 1) d.Tick(tick);
      OutboundMessage m;
      std::string login;
      if (app_next) {
        m.sasl_login = "shop@example.net";
        app += app < jump ? 5.0 : 0.5;
      } else {
        login = "user" + std::to_string(who(rng)) + "@example.org";
        m.sasl_login = login;
        background += gap(rng);
      }
      d.OnMessage(m, t);
      for (const SpikeEvent& e : d.TakeEvents()) {
        if (e.started && e.key == "shop@example.net") detection = t - jump;
      }
    }
  }
  state.counters["detection_seconds"] = detection;
}
BENCHMARK(BM_DetectionTimeOfATenTimesSpike)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mailpulse

BENCHMARK_MAIN();
