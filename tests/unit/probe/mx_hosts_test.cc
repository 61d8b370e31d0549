// The MX hosts of a mail domain in the order to try (probe/mx_hosts.h): RFC 5321 section 5.1
// ordering and the implicit MX, RFC 7505's null MX, the bound on hosts and hostile names.
#include "probe/mx_hosts.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

namespace mailpulse {
namespace {

using Kind = MxAnswer::Kind;
using Hosts = std::vector<std::string>;

MxAnswer Records(std::vector<MxRecord> records) { return {Kind::kRecords, std::move(records)}; }

// Never moves anything: Fisher-Yates with "pick the last" keeps the order.
std::size_t KeepOrder(std::size_t n) { return n - 1; }
// Always swaps with the first: a visibly different, still deterministic order.
std::size_t PickFirst(std::size_t) { return 0; }

Hosts HostsOf(const MxAnswer& answer, const RandomIndex& random = KeepOrder) {
  StatusOr<MxHosts> hosts = MxHostsToTry("example.org", answer, random);
  EXPECT_TRUE(hosts.ok()) << hosts.status().message();
  return hosts.ok() ? hosts->hosts : Hosts{};
}

std::string ErrorOf(const MxAnswer& answer) {
  StatusOr<MxHosts> hosts = MxHostsToTry("example.org", answer, KeepOrder);
  EXPECT_FALSE(hosts.ok());
  return hosts.ok() ? "" : hosts.status().message();
}

TEST(MxHostsToTryTest, LowestPreferenceComesFirstWhateverTheAnswerOrder) {
  const Hosts hosts = HostsOf(
      Records({{30, "mx3.example.org."}, {10, "mx1.example.org."}, {20, "mx2.example.org."}}));
  EXPECT_EQ(hosts, (Hosts{"mx1.example.org", "mx2.example.org", "mx3.example.org"}));
}

TEST(MxHostsToTryTest, EqualPreferencesAreOrderedByTheInjectedRandomSource) {
  const MxAnswer answer =
      Records({{10, "a.example.org"}, {10, "b.example.org"}, {10, "c.example.org"}, {5, "z.x"}});
  EXPECT_EQ(HostsOf(answer, KeepOrder),
            (Hosts{"z.x", "a.example.org", "b.example.org", "c.example.org"}));
  // Fisher-Yates over [a, b, c] always picking index 0: swap(c, a) -> [c, b, a], then
  // swap(b, c) -> [b, c, a].
  EXPECT_EQ(HostsOf(answer, PickFirst),
            (Hosts{"z.x", "b.example.org", "c.example.org", "a.example.org"}));
}

TEST(MxHostsToTryTest, ShuffleNeverCrossesAPreferenceBoundary) {
  std::mt19937 generator(42);
  const RandomIndex random = [&generator](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(generator);
  };
  const MxAnswer answer =
      Records({{20, "c.x"}, {10, "a.x"}, {20, "d.x"}, {10, "b.x"}, {30, "e.x"}});
  std::set<Hosts> seen;
  for (int i = 0; i < 200; ++i) {
    const Hosts hosts = HostsOf(answer, random);
    ASSERT_EQ(hosts.size(), 5u);
    EXPECT_EQ(std::set<std::string>(hosts.begin(), hosts.begin() + 2),
              (std::set<std::string>{"a.x", "b.x"}));
    EXPECT_EQ(std::set<std::string>(hosts.begin() + 2, hosts.begin() + 4),
              (std::set<std::string>{"c.x", "d.x"}));
    EXPECT_EQ(hosts[4], "e.x");
    seen.insert(hosts);
  }
  EXPECT_EQ(seen.size(), 4u) << "both equal-preference pairs come in both orders";
}

TEST(MxHostsToTryTest, RandomSourceOutOfRangeCannotOverrun) {
  const Hosts hosts =
      HostsOf(Records({{10, "a.x"}, {10, "b.x"}}), [](std::size_t n) { return n + 100; });
  EXPECT_EQ(hosts.size(), 2u);
}

TEST(MxHostsToTryTest, NoMxRecordsMeansTheDomainItselfAsImplicitMx) {
  StatusOr<MxHosts> hosts = MxHostsToTry("example.org.", {Kind::kNoRecords, {}}, KeepOrder);
  ASSERT_TRUE(hosts.ok()) << hosts.status().message();
  EXPECT_EQ(hosts->hosts, Hosts{"example.org"});
  EXPECT_TRUE(hosts->implicit);
}

TEST(MxHostsToTryTest, ExplicitRecordsAreNotAnImplicitMx) {
  StatusOr<MxHosts> hosts = MxHostsToTry("example.org", Records({{0, "mx.x"}}), KeepOrder);
  ASSERT_TRUE(hosts.ok());
  EXPECT_FALSE(hosts->implicit);
}

TEST(MxHostsToTryTest, NoSuchDomainIsAnError) {
  EXPECT_EQ(ErrorOf({Kind::kNoSuchDomain, {}}), "example.org: no such domain (NXDOMAIN)");
}

TEST(MxHostsToTryTest, NullMxMeansTheDomainAcceptsNoMail) {
  const std::string kNullMx = "example.org: domain accepts no mail (null MX, RFC 7505)";
  EXPECT_EQ(ErrorOf(Records({{0, ""}})), kNullMx);   // c-ares spells the root name ""
  EXPECT_EQ(ErrorOf(Records({{0, "."}})), kNullMx);  // as written in a zone file
}

TEST(MxHostsToTryTest, NullMxBesideRealHostsIsSkippedNotObeyed) {
  EXPECT_EQ(HostsOf(Records({{0, ""}, {10, "mx.example.org"}})), Hosts{"mx.example.org"});
}

TEST(MxHostsToTryTest, AtMostTenHostsAreKeptTheBestOnes) {
  std::vector<MxRecord> records;
  for (int i = 30; i > 0; --i) {
    records.push_back({static_cast<std::uint16_t>(i), "mx" + std::to_string(i) + ".x"});
  }
  const Hosts hosts = HostsOf(Records(records));
  ASSERT_EQ(hosts.size(), kMaxMxHosts);
  EXPECT_EQ(hosts.front(), "mx1.x");
  EXPECT_EQ(hosts.back(), "mx10.x");
}

TEST(MxHostsToTryTest, AHostListedTwiceIsTriedOnceAtItsBestPreference) {
  const Hosts hosts =
      HostsOf(Records({{30, "MX1.example.org"}, {10, "mx1.example.org."}, {20, "mx2.x"}}));
  EXPECT_EQ(hosts, (Hosts{"mx1.example.org", "mx2.x"}));
}

TEST(MxHostsToTryTest, HostileNamesAreSkippedAndReportedPrintable) {
  StatusOr<MxHosts> hosts = MxHostsToTry(
      "example.org",
      Records({{5, "evil\r\nX-Injected: 1"}, {6, "a\\.b.example"}, {10, "mx.example.org"}}),
      KeepOrder);
  ASSERT_TRUE(hosts.ok()) << hosts.status().message();
  EXPECT_EQ(hosts->hosts, Hosts{"mx.example.org"});
  EXPECT_EQ(hosts->rejected, (Hosts{"evil\\x0d\\x0aX-Injected: 1", "a\\.b.example"}));
}

TEST(MxHostsToTryTest, OnlyHostileNamesIsAnErrorWithThePrintableName) {
  EXPECT_EQ(ErrorOf(Records({{10, std::string("bad\x07name\0x", 10)}})),
            "example.org: no usable MX host ('bad\\x07name\\x00x' is not a host name)");
}

TEST(MxHostsToTryTest, AVeryLongHostileNameIsCutInTheError) {
  const std::string error = ErrorOf(Records({{10, std::string(5000, '%')}}));
  EXPECT_LT(error.size(), 200u) << error;
}

TEST(IsHostNameTest, AcceptsLettersDigitsHyphensAndATrailingDot) {
  EXPECT_TRUE(IsHostName("mx1.example.org"));
  EXPECT_TRUE(IsHostName("mx1.example.org."));
  EXPECT_TRUE(IsHostName("a-b.0.example"));
  EXPECT_TRUE(IsHostName("localhost"));
  EXPECT_TRUE(IsHostName(std::string(63, 'a') + ".org"));
}

TEST(IsHostNameTest, RejectsBadLabelsAndCharacters) {
  EXPECT_FALSE(IsHostName(""));
  EXPECT_FALSE(IsHostName("."));
  EXPECT_FALSE(IsHostName("a..b"));
  EXPECT_FALSE(IsHostName(".a.b"));
  EXPECT_FALSE(IsHostName("-a.b"));
  EXPECT_FALSE(IsHostName("a-.b"));
  EXPECT_FALSE(IsHostName("a_b.example"));
  EXPECT_FALSE(IsHostName("a b.example"));
  EXPECT_FALSE(IsHostName("mx.example.org\n"));
  EXPECT_FALSE(IsHostName(std::string(64, 'a') + ".org"));
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefghi.";
  EXPECT_FALSE(IsHostName(long_name));
}

}  // namespace
}  // namespace mailpulse
