// Cost of the milter's accounting per message, next to its floor (the same number of relaxed
// atomic adds with no logic), so the ratio shows what the logic itself costs. Run:
//   build/tests/bench/accounting_bench
#include <benchmark/benchmark.h>

#include <atomic>

#include "milter/core/session_accounting.h"

namespace mailpulse {
namespace {

// One connection, one message with two recipients, ten headers and one body chunk.
void BM_SessionAccountingPerMessage(benchmark::State& state) {
  MetricsRegistry registry;
  TrafficCounters counters(&registry);
  ClientClassifier classifier = *ClientClassifier::Create({"127.0.0.0/8", "192.0.2.0/24"});
  const ClientEndpoint client{IpAddress::Parse("198.51.100.7"), 41000};
  for (auto _ : state) {
    SessionAccounting s(&counters, &classifier);
    s.OnConnect(client);
    s.OnHelo("TLSv1.3");
    s.OnMail("", "TLSv1.3");
    s.OnRcpt("smtp", "sink.test", "a@sink.test");
    s.OnRcpt("smtp", "sink.test", "b@sink.test");
    for (int i = 0; i < 10; ++i) s.OnHeader("X-Header", "some value of a header");
    s.OnBody(2048);
    benchmark::DoNotOptimize(s.OnEndOfMessage());
    s.OnClose();
  }
}
BENCHMARK(BM_SessionAccountingPerMessage);

void BM_SessionAccountingWithReject(benchmark::State& state) {
  MetricsRegistry registry;
  TrafficCounters counters(&registry);
  ClientClassifier classifier = *ClientClassifier::Create({"127.0.0.0/8"});
  const ClientEndpoint client{IpAddress::Parse("198.51.100.7"), 41000};
  for (auto _ : state) {
    SessionAccounting s(&counters, &classifier);
    s.OnConnect(client);
    s.OnMail("", "");
    s.OnRcpt("error", "5.1.1",
             "<x@sink.test>: Recipient address rejected: User unknown in relay recipient table");
    s.OnAbort();
    s.OnClose();
  }
}
BENCHMARK(BM_SessionAccountingWithReject);

// The floor: the nine counter updates a message causes, without any logic.
void BM_AtomicFloor(benchmark::State& state) {
  std::atomic<std::uint64_t> c[9] = {};
  for (auto _ : state) {
    for (auto& a : c) a.fetch_add(1, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_AtomicFloor);

}  // namespace
}  // namespace mailpulse

BENCHMARK_MAIN();
