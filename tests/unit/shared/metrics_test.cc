// Metrics: exact Prometheus text output, escaping, bounded label sets and thread safety.
#include "shared/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace mailpulse {
namespace {

// Every registry exports its own overflow counter first.
std::string OverflowFamily(int misses) {
  return "# HELP mailpulse_metrics_series_overflow_total Label sets that exceeded a metric "
         "family's series bound and were counted in its _overflow series instead.\n"
         "# TYPE mailpulse_metrics_series_overflow_total counter\n"
         "mailpulse_metrics_series_overflow_total " +
         std::to_string(misses) + "\n";
}

// Runs `body(thread_index)` on `threads` threads at once and joins them.
template <typename Body>
void RunConcurrently(int threads, Body body) {
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back(body, t);
  for (std::thread& worker : workers) worker.join();
}

TEST(MetricsRegistryTest, EmptyRegistryRendersOnlyItsOverflowCounter) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0));
}

TEST(MetricsRegistryTest, RendersCounterSeriesSortedByLabelValues) {
  MetricsRegistry registry;
  CounterFamily& rejects =
      registry.AddCounter("mailpulse_rejects_total", "Rejected commands.", {"direction", "stage"});
  rejects.WithLabels({"outbound", "rcpt"}).Inc();
  rejects.WithLabels({"inbound", "rcpt"}).Inc(7);
  rejects.WithLabels({"inbound", "data"}).Inc(2);
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) +
                "# HELP mailpulse_rejects_total Rejected commands.\n"
                "# TYPE mailpulse_rejects_total counter\n"
                "mailpulse_rejects_total{direction=\"inbound\",stage=\"data\"} 2\n"
                "mailpulse_rejects_total{direction=\"inbound\",stage=\"rcpt\"} 7\n"
                "mailpulse_rejects_total{direction=\"outbound\",stage=\"rcpt\"} 1\n");
}

TEST(MetricsRegistryTest, RendersUntouchedLabelLessCounterAsZero) {
  MetricsRegistry registry;
  registry.AddCounter("mailpulse_restarts_total", "Restarts.");
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) +
                                             "# HELP mailpulse_restarts_total Restarts.\n"
                                             "# TYPE mailpulse_restarts_total counter\n"
                                             "mailpulse_restarts_total 0\n");
}

TEST(MetricsRegistryTest, RendersGaugeValuesAsTheGoClientDoes) {
  MetricsRegistry registry;
  GaugeFamily& gauge = registry.AddGauge("g", "Numbers.", {"case"});
  const double inf = std::numeric_limits<double>::infinity();
  gauge.WithLabels({"m"}).Set(1234567);
  gauge.WithLabels({"a"}).Set(0.1);
  gauge.WithLabels({"b"}).Set(1.0 / 3);
  gauge.WithLabels({"c"}).Set(1e6);
  gauge.WithLabels({"d"}).Set(123456.5);
  gauge.WithLabels({"e"}).Set(-2.5);
  gauge.WithLabels({"f"}).Set(0.0001);
  gauge.WithLabels({"g"}).Set(0.00001);
  gauge.WithLabels({"h"}).Set(inf);
  gauge.WithLabels({"i"}).Set(-inf);
  gauge.WithLabels({"j"}).Set(std::nan(""));
  gauge.WithLabels({"k"}).Set(-0.0);
  gauge.WithLabels({"l"}).Set(100000);
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) +
                                             "# HELP g Numbers.\n"
                                             "# TYPE g gauge\n"
                                             "g{case=\"a\"} 0.1\n"
                                             "g{case=\"b\"} 0.3333333333333333\n"
                                             "g{case=\"c\"} 1e+06\n"
                                             "g{case=\"d\"} 123456.5\n"
                                             "g{case=\"e\"} -2.5\n"
                                             "g{case=\"f\"} 0.0001\n"
                                             "g{case=\"g\"} 1e-05\n"
                                             "g{case=\"h\"} +Inf\n"
                                             "g{case=\"i\"} -Inf\n"
                                             "g{case=\"j\"} NaN\n"
                                             "g{case=\"k\"} 0\n"
                                             "g{case=\"l\"} 100000\n"
                                             "g{case=\"m\"} 1.234567e+06\n");
}

TEST(MetricsRegistryTest, RendersHistogramWithCumulativeBucketsSumAndCount) {
  MetricsRegistry registry;
  HistogramFamily& latency = registry.AddHistogram("mailpulse_probe_seconds", "Probe latency.",
                                                   {"target"}, {0.125, 0.5, 2});
  // Binary fractions, so the expected sum is exact.
  Histogram& mx1 = latency.WithLabels({"mx1"});
  mx1.Observe(0.0625);
  mx1.Observe(0.125);
  mx1.Observe(0.25);
  mx1.Observe(7);
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) +
                "# HELP mailpulse_probe_seconds Probe latency.\n"
                "# TYPE mailpulse_probe_seconds histogram\n"
                "mailpulse_probe_seconds_bucket{target=\"mx1\",le=\"0.125\"} 2\n"
                "mailpulse_probe_seconds_bucket{target=\"mx1\",le=\"0.5\"} 3\n"
                "mailpulse_probe_seconds_bucket{target=\"mx1\",le=\"2\"} 3\n"
                "mailpulse_probe_seconds_bucket{target=\"mx1\",le=\"+Inf\"} 4\n"
                "mailpulse_probe_seconds_sum{target=\"mx1\"} 7.4375\n"
                "mailpulse_probe_seconds_count{target=\"mx1\"} 4\n");
}

TEST(MetricsRegistryTest, RendersLabelLessHistogramWithOnlyLeOnBuckets) {
  MetricsRegistry registry;
  registry.AddHistogram("h", "", {}, {1}).WithLabels({}).Observe(0.5);
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) +
                                             "# TYPE h histogram\n"
                                             "h_bucket{le=\"1\"} 1\n"
                                             "h_bucket{le=\"+Inf\"} 1\n"
                                             "h_sum 0.5\n"
                                             "h_count 1\n");
}

TEST(MetricsRegistryTest, SpellsDefaultSecondsBoundsAsTheGoClientDoes) {
  MetricsRegistry registry;
  registry.AddHistogram("h", "", {}, DefaultSecondsBuckets());
  const std::string text = registry.RenderPrometheus();
  for (const char* le : {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                         "1", "2.5", "5", "10", "30", "60", "+Inf"}) {
    EXPECT_NE(text.find(std::string("h_bucket{le=\"") + le + "\"} 0\n"), std::string::npos) << le;
  }
}

TEST(MetricsRegistryTest, EscapesBackslashQuoteAndNewlineInLabelValues) {
  MetricsRegistry registry;
  registry.AddCounter("c", "", {"helo"}).WithLabels({"a\\b\"c\nd"}).Inc();
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) + "# TYPE c counter\nc{helo=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(MetricsRegistryTest, EscapesBackslashAndNewlineButNotQuotesInHelp) {
  MetricsRegistry registry;
  registry.AddCounter("c", "Say \"hi\"\\twice\nplease");
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) + "# HELP c Say \"hi\"\\\\twice\\nplease\n# TYPE c counter\nc 0\n");
}

TEST(MetricsRegistryTest, ReplacesInvalidUtf8InLabelValuesSoTheScrapeStaysValid) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"helo"});
  family.WithLabels({"caf\xc3\xa9"}).Inc();      // valid two-byte sequence: kept
  family.WithLabels({"bad\xff"}).Inc();          // stray byte
  family.WithLabels({"bad\xc0"}).Inc();          // truncated sequence
  family.WithLabels({"sur\xed\xa0\x80"}).Inc();  // UTF-16 surrogate
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) +
                "# TYPE c counter\n"
                "c{helo=\"bad\xef\xbf\xbd\"} 2\n"
                "c{helo=\"caf\xc3\xa9\"} 1\n"
                "c{helo=\"sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1\n");
}

TEST(MetricsRegistryTest, RendersFamiliesInRegistrationOrder) {
  MetricsRegistry registry;
  registry.AddGauge("zeta", "");
  registry.AddCounter("alpha", "");
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) + "# TYPE zeta gauge\nzeta 0\n# TYPE alpha counter\nalpha 0\n");
}

TEST(MetricsRegistryTest, RegisteringANameTwiceReturnsTheFirstFamily) {
  MetricsRegistry registry;
  CounterFamily& first = registry.AddCounter("c", "First.", {"a"});
  CounterFamily& second = registry.AddCounter("c", "Second.", {"b", "c"});
  EXPECT_EQ(&first, &second);
  second.WithLabels({"x"}).Inc();
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) + "# HELP c First.\n# TYPE c counter\nc{a=\"x\"} 1\n");
}

TEST(MetricsRegistryTest, KeepsASameNamedFamilyOfAnotherTypeOutOfTheExposition) {
  MetricsRegistry registry;
  registry.AddCounter("m", "").WithLabels({}).Inc();
  GaugeFamily& clash = registry.AddGauge("m", "");
  clash.WithLabels({}).Set(5);  // usable, but never exported
  EXPECT_EQ(&clash, &registry.AddGauge("m", ""));
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) + "# TYPE m counter\nm 1\n");
}

TEST(MetricsRegistryTest, PadsMissingLabelValuesWithEmptyStrings) {
  MetricsRegistry registry;
  registry.AddCounter("c", "", {"a", "b"}).WithLabels({"x"}).Inc();
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(0) + "# TYPE c counter\nc{a=\"x\",b=\"\"} 1\n");
}

TEST(MetricsRegistryTest, DropsSurplusLabelValues) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"});
  family.WithLabels({"x", "y", "z"}).Inc();
  family.WithLabels(std::vector<std::string>{"x", "w"}).Inc();
  registry.AddCounter("plain", "").WithLabels({"ignored"}).Inc();
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) +
                                             "# TYPE c counter\nc{a=\"x\"} 2\n"
                                             "# TYPE plain counter\nplain 1\n");
}

TEST(MetricsRegistryTest, SameLabelValuesResolveToTheSameStableSeries) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"});
  Counter& first = family.WithLabels({"x"});
  for (int i = 0; i < 100; ++i) family.WithLabels({"v" + std::to_string(i)});
  for (int i = 0; i < 20; ++i) registry.AddGauge("g" + std::to_string(i), "");
  EXPECT_EQ(&first, &family.WithLabels(std::vector<std::string>{"x"}));
}

TEST(MetricsRegistryTest, LabelSetsBeyondTheBoundShareOneOverflowSeries) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"client", "stage"}, /*max_series=*/2);
  family.WithLabels({"a", "rcpt"}).Inc();
  family.WithLabels({"b", "rcpt"}).Inc();
  Counter& third = family.WithLabels({"c", "rcpt"});
  Counter& fourth = family.WithLabels({"d", "data"});
  EXPECT_EQ(&third, &fourth);
  third.Inc(5);
  family.WithLabels({"a", "rcpt"}).Inc();  // known series still resolve normally
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(2) +
                                             "# TYPE c counter\n"
                                             "c{client=\"_overflow\",stage=\"_overflow\"} 5\n"
                                             "c{client=\"a\",stage=\"rcpt\"} 2\n"
                                             "c{client=\"b\",stage=\"rcpt\"} 1\n");
}

TEST(MetricsRegistryTest, RemoveDropsTheSeriesWithTheGivenLeadingLabelValues) {
  MetricsRegistry registry;
  GaugeFamily& family = registry.AddGauge("g", "", {"target", "phase"});
  family.WithLabels({"mx1", "banner"}).Set(1);
  family.WithLabels({"mx1", "ehlo"}).Set(2);
  family.WithLabels({"mx2", "banner"}).Set(3);
  EXPECT_EQ(family.Remove({"mx1", "ehlo"}), 1u);
  EXPECT_EQ(family.Remove({"mx9"}), 0u);
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) +
                                             "# TYPE g gauge\n"
                                             "g{target=\"mx1\",phase=\"banner\"} 1\n"
                                             "g{target=\"mx2\",phase=\"banner\"} 3\n");
  EXPECT_EQ(family.Remove({"mx1"}), 1u);
  EXPECT_EQ(family.Remove({"mx2"}), 1u);
  EXPECT_EQ(registry.RenderPrometheus(), OverflowFamily(0) + "# TYPE g gauge\n");
  EXPECT_EQ(family.WithLabels({"mx1", "banner"}).Value(), 0);  // a new series starts afresh
}

TEST(MetricsRegistryTest, RemovedSeriesFreeRoomUnderTheBound) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"}, /*max_series=*/1);
  family.WithLabels({"x"}).Inc();
  family.WithLabels({"y"}).Inc();  // overflow
  EXPECT_EQ(family.Remove({"x"}), 1u);
  family.WithLabels({"z"}).Inc(7);
  EXPECT_NE(registry.RenderPrometheus().find("c{a=\"z\"} 7\n"), std::string::npos);
}

TEST(MetricsRegistryTest, ZeroSeriesBoundSendsEveryLabelSetToOverflow) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"}, /*max_series=*/0);
  family.WithLabels({"x"}).Inc();
  EXPECT_EQ(registry.RenderPrometheus(),
            OverflowFamily(1) + "# TYPE c counter\nc{a=\"_overflow\"} 1\n");
}

TEST(MetricsRegistryTest, ConcurrentNewLabelSetsNeverExceedTheBound) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"}, /*max_series=*/10);
  RunConcurrently(8, [&family](int t) {
    for (int i = 0; i < 200; ++i) family.WithLabels({std::to_string(t * 1000 + i)}).Inc();
  });
  const std::string text = registry.RenderPrometheus();
  std::size_t series = 0;
  for (std::size_t pos = 0; (pos = text.find("\nc{", pos)) != std::string::npos; ++pos) ++series;
  EXPECT_EQ(series, 11u);  // ten regular series plus the overflow one
  EXPECT_NE(text.find("c{a=\"_overflow\"} 1590\n"), std::string::npos);
  EXPECT_NE(text.find("mailpulse_metrics_series_overflow_total 1590\n"), std::string::npos);
}

TEST(CounterTest, ConcurrentIncrementsFromSeveralThreadsAreAllCounted) {
  MetricsRegistry registry;
  CounterFamily& family = registry.AddCounter("c", "", {"a"});
  RunConcurrently(8, [&family](int) {
    Counter& counter = family.WithLabels({"shared"});
    for (int i = 0; i < 100000; ++i) counter.Inc();
  });
  EXPECT_EQ(family.WithLabels({"shared"}).Value(), 800000u);
}

TEST(GaugeTest, SetReplacesAndAddAccumulates) {
  Gauge gauge;
  gauge.Add(2.5);
  gauge.Add(-1);
  EXPECT_EQ(gauge.Value(), 1.5);
  gauge.Set(-7);
  EXPECT_EQ(gauge.Value(), -7);
}

TEST(GaugeTest, ConcurrentAddsFromSeveralThreadsSumExactly) {
  Gauge gauge;
  RunConcurrently(8, [&gauge](int t) {
    for (int i = 0; i < 50000; ++i) gauge.Add(t % 2 == 0 ? 2.0 : -1.0);
  });
  EXPECT_EQ(gauge.Value(), 4 * 50000 * 2.0 - 4 * 50000 * 1.0);
}

TEST(HistogramTest, ValueEqualToABoundCountsInThatBucket) {
  Histogram histogram({1, 2});
  histogram.Observe(1);
  const Histogram::Snapshot snapshot = histogram.Take();
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{1, 1, 1}));
}

TEST(HistogramTest, ValueJustAboveABoundCountsInTheNextBucket) {
  Histogram histogram({1, 2});
  histogram.Observe(std::nextafter(1.0, 2.0));
  EXPECT_EQ(histogram.Take().cumulative_counts, (std::vector<std::uint64_t>{0, 1, 1}));
}

TEST(HistogramTest, ValueAboveTheLastBoundCountsOnlyInInf) {
  Histogram histogram({1, 2});
  histogram.Observe(2.5);
  histogram.Observe(std::numeric_limits<double>::infinity());
  EXPECT_EQ(histogram.Take().cumulative_counts, (std::vector<std::uint64_t>{0, 0, 2}));
}

TEST(HistogramTest, NegativeValuesCountInTheFirstBucket) {
  Histogram histogram({0, 1});
  histogram.Observe(-3);
  EXPECT_EQ(histogram.Take().cumulative_counts, (std::vector<std::uint64_t>{1, 1, 1}));
}

TEST(HistogramTest, NanCountsOnlyInInfAsTheGoClientDoes) {
  Histogram histogram({1});
  histogram.Observe(std::nan(""));
  const Histogram::Snapshot snapshot = histogram.Take();
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{0, 1}));
  EXPECT_TRUE(std::isnan(snapshot.sum));
}

TEST(HistogramTest, BoundsAreSortedDeduplicatedAndFinite) {
  const double inf = std::numeric_limits<double>::infinity();
  Histogram histogram({5, 1, inf, std::nan(""), 1, -inf, 2});
  EXPECT_EQ(histogram.Take().upper_bounds, (std::vector<double>{1, 2, 5}));
}

TEST(HistogramTest, ConcurrentObservationsKeepCountAndSumExact) {
  Histogram histogram(DefaultSecondsBuckets());
  RunConcurrently(8, [&histogram](int) {
    for (int i = 0; i < 20000; ++i) histogram.Observe(i % 2 == 0 ? 0.5 : 2.0);
  });
  const Histogram::Snapshot snapshot = histogram.Take();
  EXPECT_EQ(snapshot.count, 160000u);
  EXPECT_EQ(snapshot.cumulative_counts.back(), 160000u);
  EXPECT_EQ(snapshot.sum, 80000 * 0.5 + 80000 * 2.0);
}

TEST(HistogramTest, DefaultSecondsBucketsSpanOneMillisecondToOneMinute) {
  const std::vector<double> bounds = DefaultSecondsBuckets();
  ASSERT_FALSE(bounds.empty());
  EXPECT_EQ(bounds.front(), 0.001);
  EXPECT_EQ(bounds.back(), 60);
  EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
}

}  // namespace
}  // namespace mailpulse
