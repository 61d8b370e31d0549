// What a finished journey leaves in /metrics, in its log line and in its JSON
// (probe/journey_report.h).
#include "probe/journey_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailpulse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kSent = 1795500000000000;  // 2026-11-24 06:00:00 UTC
constexpr char kId[] = "0123456789abcdef0123456789abcdef";

HopVisit Visit(const char* hop, std::int64_t after_us, const char* qid, bool tls = false) {
  return {hop, kSent + after_us, qid, "192.0.2.1", tls};
}

Journey Delivered() {
  Journey j;
  j.probe_id = kId;
  j.target = "rt";
  j.sent_unix_us = kSent;
  j.queue_id = "E1";
  j.hops = {Visit("edge", 1000, "E1"), Visit("mx", 251000, "M1", true)};
  j.outcome = JourneyOutcome::kDelivered;
  j.ended_unix_us = kSent + 251000;
  j.delivered_hop = "mx";
  return j;
}

Journey Bounced() {
  Journey j = Delivered();
  j.outcome = JourneyOutcome::kBounced;
  j.delivered_hop.clear();
  j.ended_unix_us = kSent + 300000;
  j.bounce.set_hop("mx");
  j.bounce.set_reporting_mta("edge.example.org");
  proto::BounceRecipient* r = j.bounce.add_recipients();
  r->set_final_recipient("nobody@example.org");
  r->set_action("failed");
  r->set_status("5.1.1");
  r->set_diagnostic_code("smtp; 550 5.1.1 User unknown");
  return j;
}

Journey Lost() {
  Journey j = Delivered();
  j.outcome = JourneyOutcome::kLost;
  j.delivered_hop.clear();
  j.hops.resize(1);
  return j;
}

std::string Render(const MetricsRegistry& registry) { return registry.RenderPrometheus(); }

TEST(RoundTripMetricsTest, ADeliveredJourneyRecordsItsRoundTripAndEveryHop) {
  MetricsRegistry registry;
  RoundTripMetrics metrics(&registry);
  metrics.RecordFinished(Delivered());
  const std::string text = Render(registry);
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_total{target=\"rt\",outcome=\"delivered\"} 1"));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_seconds_count{target=\"rt\"} 1"));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_seconds_sum{target=\"rt\"} 0.251"));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_last_seconds{target=\"rt\"} 0.251"));
  EXPECT_THAT(text,
              HasSubstr("mailpulse_hop_latency_seconds_sum{target=\"rt\",hop=\"edge\"} 0.001"));
  EXPECT_THAT(text, HasSubstr("mailpulse_hop_latency_seconds_sum{target=\"rt\",hop=\"mx\"} 0.25"));
  // 0.25 s falls in the 0.25 bucket (le is inclusive), not in 0.1.
  EXPECT_THAT(text, HasSubstr("mailpulse_hop_latency_seconds_bucket{target=\"rt\",hop=\"mx\","
                              "le=\"0.25\"} 1"));
  EXPECT_THAT(text, HasSubstr("mailpulse_hop_latency_seconds_bucket{target=\"rt\",hop=\"mx\","
                              "le=\"0.1\"} 0"));
}

TEST(RoundTripMetricsTest, ABounceCountsItsHopsButNoRoundTrip) {
  MetricsRegistry registry;
  RoundTripMetrics metrics(&registry);
  metrics.RecordFinished(Bounced());
  const std::string text = Render(registry);
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_total{target=\"rt\",outcome=\"bounced\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("mailpulse_roundtrip_seconds_count{target=\"rt\"}")));
  EXPECT_THAT(text, Not(HasSubstr("mailpulse_roundtrip_last_seconds{target=\"rt\"}")));
  EXPECT_THAT(text, HasSubstr("mailpulse_hop_latency_seconds_count{target=\"rt\",hop=\"mx\"} 1"));
}

TEST(RoundTripMetricsTest, ALostJourneyIsNoLatency) {
  MetricsRegistry registry;
  RoundTripMetrics metrics(&registry);
  metrics.RecordFinished(Lost());
  const std::string text = Render(registry);
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_total{target=\"rt\",outcome=\"lost\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("mailpulse_hop_latency_seconds_count{target=\"rt\"")));
}

TEST(RoundTripMetricsTest, LateReportsOrphansAndForgottenTargets) {
  MetricsRegistry registry;
  RoundTripMetrics metrics(&registry);
  metrics.RecordFinished(Delivered());
  metrics.RecordLate("rt");
  metrics.SetPending(3);
  metrics.SetOrphansDropped(2);
  metrics.SetOrphansDropped(2);  // a running total: no change
  metrics.SetOrphansDropped(5);
  std::string text = Render(registry);
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_late_reports_total{target=\"rt\"} 1"));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_pending 3"));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_orphan_reports_total 5"));
  metrics.ForgetTarget("rt");
  text = Render(registry);
  EXPECT_THAT(text, Not(HasSubstr("target=\"rt\"")));
  EXPECT_THAT(text, HasSubstr("mailpulse_roundtrip_orphan_reports_total 5"));
}

TEST(JourneyLogLineTest, DeliveredShowsEveryHopWithItsLatency) {
  EXPECT_EQ(JourneyLogLine(Delivered()),
            "journey 0123456789abcdef0123456789abcdef target rt: delivered in 0.251 s: sent "
            "06:00:00.000000 (qid E1), edge +0.001 s (qid E1), mx +0.250 s (qid M1, tls) "
            "delivered at mx");
}

TEST(JourneyLogLineTest, BouncedCarriesEachRecipientsStatus) {
  EXPECT_THAT(JourneyLogLine(Bounced()),
              HasSubstr("target rt: bounced: sent 06:00:00.000000 (qid E1), edge +0.001 s"));
  EXPECT_THAT(JourneyLogLine(Bounced()),
              HasSubstr("; bounced: nobody@example.org failed 5.1.1 (smtp; 550 5.1.1 User "
                        "unknown) reported by edge.example.org"));
}

TEST(JourneyLogLineTest, LostSaysWhereItWasLastSeen) {
  EXPECT_THAT(JourneyLogLine(Lost()), HasSubstr(": lost: sent "));
  EXPECT_THAT(JourneyLogLine(Lost()), HasSubstr("; last seen at edge"));
  Journey never = Lost();
  never.hops.clear();
  EXPECT_THAT(JourneyLogLine(never), HasSubstr("; never seen by any hop"));
  never.evicted = true;
  EXPECT_THAT(JourneyLogLine(never), HasSubstr("(finished early: too many journeys pending)"));
}

TEST(JourneyJsonTest, CarriesHopsLatenciesAndTheBounce) {
  const nlohmann::json d = JourneyJson(Delivered());
  EXPECT_EQ(d["probe_id"], kId);
  EXPECT_EQ(d["outcome"], "delivered");
  EXPECT_DOUBLE_EQ(d["roundtrip_seconds"].get<double>(), 0.251);
  ASSERT_EQ(d["hops"].size(), 2u);
  EXPECT_EQ(d["hops"][1]["hop"], "mx");
  EXPECT_EQ(d["hops"][1]["queue_id"], "M1");
  EXPECT_EQ(d["hops"][1]["tls"], true);
  EXPECT_DOUBLE_EQ(d["hops"][1]["latency_seconds"].get<double>(), 0.25);
  EXPECT_EQ(d["delivered_hop"], "mx");
  EXPECT_FALSE(d.contains("bounce"));

  const nlohmann::json b = JourneyJson(Bounced());
  EXPECT_FALSE(b.contains("roundtrip_seconds"));
  EXPECT_EQ(b["bounce"]["reporting_mta"], "edge.example.org");
  EXPECT_EQ(b["bounce"]["recipients"][0]["status"], "5.1.1");

  Journey unsent = Lost();
  unsent.sent_unix_us = 0;  // a sighting before Sent: no latency to show
  EXPECT_FALSE(JourneyJson(unsent)["hops"][0].contains("latency_seconds"));
}

}  // namespace
}  // namespace mailpulse
