// The probe token (shared/probe_token.h): signing, the forgiving-but-strict grammar, and the
// checks in order — version, MAC, age, replay. Key files, the replay guard and the hop stamp
// are in probe_key_test.cc and replay_guard_test.cc.
#include "shared/probe_token.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace mailpulse {
namespace {

constexpr std::string_view kKeyText = "test-key-0123456789abcdef0123456789";
constexpr std::string_view kId = "5f2b8c1d9e3a4b6c7d8e9f0a1b2c3d4e";
constexpr std::int64_t kT = 1'795'500'000'000'000;  // 2026-11-24, in µs
constexpr std::int64_t kSecond = 1'000'000;
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
// HMAC-SHA256 of "v=1;id=<kId>;t=<kT>;src=probe-1" under kKeyText, from `openssl dgst`.
constexpr std::string_view kKnownMac = "rohoaVebDxTrpXx6wz7dCmPdsFvslwXGQKt7no1JIV0=";

ProbeKey TestKey() { return ProbeKey::FromBytes(kKeyText).value(); }

using Fields = std::vector<std::pair<std::string, std::string>>;

// The fields of the token signed for kId at kT by "probe-1", in the format's order.
Fields SignedFields() {
  return {{"v", "1"},
          {"id", std::string(kId)},
          {"t", std::to_string(kT)},
          {"src", "probe-1"},
          {"mac", std::string(kKnownMac)}};
}

std::string Render(const Fields& fields, std::string_view separator = "; ") {
  std::string out;
  for (const auto& [name, value] : fields) {
    out += (out.empty() ? "" : std::string(separator)) + name + "=" + value;
  }
  return out;
}

Fields With(Fields fields, const std::string& name, const std::string& value) {
  for (auto& field : fields) {
    if (field.first == name) field.second = value;
  }
  return fields;
}

Fields Without(Fields fields, const std::string& name) {
  std::erase_if(fields, [&](const auto& field) { return field.first == name; });
  return fields;
}

TokenProblem Check(std::string_view value, std::int64_t now = kT, ReplayGuard* guard = nullptr,
                   std::string_view hop = "mx1") {
  return VerifyProbeToken(TestKey(), value, now, TokenLimits{}, guard, hop).problem;
}

TEST(ProbeTokenTest, SignedTokenHasTheDocumentedFormatAndKnownMac) {
  StatusOr<std::string> signed_value = SignProbeToken(TestKey(), kId, kT, "probe-1");
  ASSERT_TRUE(signed_value.ok()) << signed_value.status().message();
  EXPECT_EQ(*signed_value, Render(SignedFields()));
  ProbeToken token;
  token.id = std::string(kId);
  token.time_unix_us = kT;
  token.source = "probe-1";
  EXPECT_EQ(CanonicalProbeToken(token),
            "v=1;id=" + std::string(kId) + ";t=" + std::to_string(kT) + ";src=probe-1");
  EXPECT_EQ(ProbeTokenMac(TestKey(), CanonicalProbeToken(token)), kKnownMac);
}

TEST(ProbeTokenTest, SignedTokenVerifiesAndParsesBackToItsFields) {
  const std::string value = SignProbeToken(TestKey(), kId, kT, "probe-1").value();
  const TokenCheck check = VerifyProbeToken(TestKey(), value, kT, TokenLimits{}, nullptr, "mx1");
  EXPECT_EQ(check.problem, TokenProblem::kNone);
  EXPECT_EQ(check.token.version, 1);
  EXPECT_EQ(check.token.id, kId);
  EXPECT_EQ(check.token.time_unix_us, kT);
  EXPECT_EQ(check.token.source, "probe-1");
  EXPECT_EQ(check.token.mac, kKnownMac);
}

TEST(ProbeTokenTest, SigningWritesTheIdInLowerCase) {
  const std::string value =
      SignProbeToken(TestKey(), "5F2B8C1D9E3A4B6C7D8E9F0A1B2C3D4E", kT, "probe-1").value();
  EXPECT_EQ(value, Render(SignedFields()));
}

TEST(ProbeTokenTest, SigningRefusesABadIdSourceOrTime) {
  EXPECT_FALSE(SignProbeToken(TestKey(), "5f2b", kT, "probe-1").ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), "5f2b8c1d9e3a4b6c7d8e9f0a1b2c3d4g", kT, "probe-1").ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), kId, kT, "").ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), kId, kT, "probe 1").ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), kId, kT, "probe;1").ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), kId, kT, std::string(65, 'p')).ok());
  EXPECT_TRUE(SignProbeToken(TestKey(), kId, kT, std::string(64, 'p')).ok());
  EXPECT_FALSE(SignProbeToken(TestKey(), kId, -1, "probe-1").ok());
}

TEST(ProbeTokenTest, TamperedVersionIsAVersionProblem) {
  EXPECT_EQ(Check(Render(With(SignedFields(), "v", "2"))), TokenProblem::kVersion);
}

TEST(ProbeTokenTest, TamperedIdFailsTheMac) {
  EXPECT_EQ(Check(Render(With(SignedFields(), "id", "5f2b8c1d9e3a4b6c7d8e9f0a1b2c3d4f"))),
            TokenProblem::kMac);
}

TEST(ProbeTokenTest, TamperedTimestampFailsTheMac) {
  EXPECT_EQ(Check(Render(With(SignedFields(), "t", std::to_string(kT + 1)))), TokenProblem::kMac);
}

TEST(ProbeTokenTest, TamperedSourceFailsTheMac) {
  EXPECT_EQ(Check(Render(With(SignedFields(), "src", "probe-2"))), TokenProblem::kMac);
}

TEST(ProbeTokenTest, TamperedMacFailsTheMac) {
  std::string mac(kKnownMac);
  mac[0] = mac[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Check(Render(With(SignedFields(), "mac", mac))), TokenProblem::kMac);
}

TEST(ProbeTokenTest, AnotherKeyFailsTheMac) {
  const ProbeKey other = ProbeKey::FromBytes("another-key-0123456789abcdef012345").value();
  const std::string value = SignProbeToken(other, kId, kT, "probe-1").value();
  EXPECT_EQ(Check(value), TokenProblem::kMac);
}

TEST(ProbeTokenTest, EachRemovedFieldIsMalformed) {
  for (const auto& [name, value] : SignedFields()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(Check(Render(Without(SignedFields(), name))), TokenProblem::kMalformed);
    EXPECT_FALSE(ParseProbeToken(Render(Without(SignedFields(), name))).ok());
  }
}

TEST(ProbeTokenTest, EachDuplicatedFieldIsMalformedEvenWithTheSameValue) {
  for (const auto& field : SignedFields()) {
    SCOPED_TRACE(field.first);
    Fields fields = SignedFields();
    fields.push_back(field);
    EXPECT_EQ(Check(Render(fields)), TokenProblem::kMalformed);
    fields.back().first[0] = static_cast<char>(std::toupper(fields.back().first[0]));
    EXPECT_EQ(Check(Render(fields)), TokenProblem::kMalformed) << "names are case-insensitive";
  }
}

TEST(ProbeTokenTest, HowMailFormatsAHeaderDoesNotMatter) {
  const Fields in_order = SignedFields();
  const Fields reversed(in_order.rbegin(), in_order.rend());
  Fields upper_names = SignedFields();
  upper_names[1].first = "ID";
  upper_names[3].first = "SrC";
  Fields extra = SignedFields();
  extra.insert(extra.begin() + 2, {"x-future", "anything:goes=here"});
  extra.push_back({"note", ""});
  const std::vector<std::string> values = {
      Render(SignedFields(), ";"),
      Render(SignedFields(), ";\r\n\t"),
      Render(SignedFields(), ";\r\n "),
      Render(SignedFields(), ";\n\t"),
      Render(SignedFields(), "  ;  "),
      "  \t" + Render(SignedFields()) + " \t",
      "\r\n " + Render(SignedFields()) + "\r\n",
      Render(SignedFields()) + ";",
      Render(SignedFields()) + " ; ",
      "v = 1; id =\r\n " + std::string(kId) + "; t= " + std::to_string(kT) +
          "; src\t=\tprobe-1; mac =" + std::string(kKnownMac),
      Render(reversed),
      Render(upper_names),
      Render(With(SignedFields(), "id", "5F2B8C1D9E3A4B6C7D8E9F0A1B2C3D4E")),
      Render(extra),
  };
  for (const std::string& value : values) {
    SCOPED_TRACE(value);
    EXPECT_EQ(Check(value), TokenProblem::kNone);
    StatusOr<ProbeToken> token = ParseProbeToken(value);
    ASSERT_TRUE(token.ok()) << token.status().message();
    EXPECT_EQ(token->id, kId);
  }
}

TEST(ProbeTokenTest, GarbageIsMalformed) {
  const std::string good = Render(SignedFields());
  const std::vector<std::string> values = {
      "",
      " ",
      ";",
      "\r\n",
      "garbage",
      "v=1",
      "=1; " + good,
      good + ";;",
      ";" + good,
      "v=1;; " + Render(Without(SignedFields(), "v")),
      good + "; bad name=1",
      good + "; novalue",
      good + "; " + std::string(33, 'n') + "=1",
      std::string("v=1\0", 4) + good.substr(3),
      Render(SignedFields(), ";\r"),
      Render(SignedFields(), ";\n"),
      Render(SignedFields(), ";\r\n"),
      Render(SignedFields(), ";\r\r\n "),
      good + "; x=caf\xc3\xa9",
      good + "; x=\x7f",
      Render(With(SignedFields(), "v", "")),
      Render(With(SignedFields(), "v", "01")),
      Render(With(SignedFields(), "v", "1.0")),
      Render(With(SignedFields(), "v", "+1")),
      Render(With(SignedFields(), "id", std::string(kId.substr(1)))),
      Render(With(SignedFields(), "id", std::string(kId) + "0")),
      Render(With(SignedFields(), "id", "5f2b8c1d9e3a4b6c7d8e9f0a1b2c3d4g")),
      Render(With(SignedFields(), "t", "")),
      Render(With(SignedFields(), "t", "+1795500000000000")),
      Render(With(SignedFields(), "t", "-1")),
      Render(With(SignedFields(), "t", "01795500000000000")),
      Render(With(SignedFields(), "t", "1795500000000000x")),
      Render(With(SignedFields(), "t", "0x1795500000000000")),
      Render(With(SignedFields(), "t", "9223372036854775808")),
      Render(With(SignedFields(), "t", "1 795500000000000")),
      Render(With(SignedFields(), "src", "")),
      Render(With(SignedFields(), "src", "probe/1")),
      Render(With(SignedFields(), "src", std::string(65, 'p'))),
      Render(With(SignedFields(), "mac", std::string(kKnownMac.substr(0, 43)))),
      Render(With(SignedFields(), "mac", std::string(kKnownMac) + "=")),
      Render(With(SignedFields(), "mac", "*" + std::string(kKnownMac.substr(1)))),
      Render(With(SignedFields(), "mac", "rohoaVebDxTrpXx6wz7dCmPdsFvslwXGQKt7no1JIV1=")),
      Render(With(SignedFields(), "mac", "rohoaVebDxTrpXx6wz7dCmPdsFvslwXGQKt7no1JI==")),
      Render(With(SignedFields(), "mac", "")),
  };
  for (const std::string& value : values) {
    SCOPED_TRACE(testing::PrintToString(value));
    EXPECT_EQ(Check(value), TokenProblem::kMalformed);
    EXPECT_FALSE(ParseProbeToken(value).ok());
  }
}

TEST(ProbeTokenTest, ValueOfExactly1024BytesIsReadAndLongerIsMalformed) {
  const std::string good = Render(SignedFields());
  std::string padded = good + "; pad=";
  padded += std::string(1024 - padded.size(), 'x');
  ASSERT_EQ(padded.size(), 1024u);
  EXPECT_EQ(Check(padded), TokenProblem::kNone);
  EXPECT_EQ(Check(padded + "x"), TokenProblem::kMalformed);
  EXPECT_EQ(Check(good + std::string(1024, ' ')), TokenProblem::kMalformed);
}

TEST(ProbeTokenTest, ErrorsNeverQuoteTheValue) {
  const std::string good = Render(SignedFields());
  for (const std::string& value :
       {good + "; EVIL<script>", "EVIL=1; " + Render(With(SignedFields(), "src", "EVIL!")),
        Render(With(SignedFields(), "t", "EVIL")), std::string("EVIL\r\nBcc: x")}) {
    StatusOr<ProbeToken> token = ParseProbeToken(value);
    ASSERT_FALSE(token.ok());
    EXPECT_EQ(token.status().message().find("EVIL"), std::string::npos) << token.status().message();
    EXPECT_EQ(token.status().message().rfind("probe token", 0), 0u) << token.status().message();
  }
}

TEST(ProbeTokenTest, ErrorsSayWhichFieldIsWrong) {
  EXPECT_NE(
      ParseProbeToken(Render(Without(SignedFields(), "src"))).status().message().find("'src'"),
      std::string::npos);
  EXPECT_NE(
      ParseProbeToken(Render(With(SignedFields(), "id", "12"))).status().message().find("'id'"),
      std::string::npos);
}

TEST(ProbeTokenTest, CheckKeepsTheFieldsParsedBeforeTheProblem) {
  const TokenCheck forged = VerifyProbeToken(
      TestKey(), Render(With(SignedFields(), "src", "probe-2")), kT, TokenLimits{}, nullptr, "mx1");
  EXPECT_EQ(forged.problem, TokenProblem::kMac);
  EXPECT_EQ(forged.token.id, kId);
  EXPECT_EQ(forged.token.source, "probe-2");
  const TokenCheck bad_t = VerifyProbeToken(TestKey(), Render(With(SignedFields(), "t", "x")), kT,
                                            TokenLimits{}, nullptr, "mx1");
  EXPECT_EQ(bad_t.problem, TokenProblem::kMalformed);
  EXPECT_EQ(bad_t.token.id, kId);
  EXPECT_EQ(bad_t.token.time_unix_us, 0);
  EXPECT_TRUE(bad_t.token.source.empty());
}

TEST(ProbeTokenTest, TokenAtExactlyTheMaximumAgeIsFreshAndOneMicrosecondMoreIsStale) {
  const std::string value = Render(SignedFields());
  const TokenLimits limits;
  EXPECT_EQ(Check(value, kT + limits.max_age_us), TokenProblem::kNone);
  EXPECT_EQ(Check(value, kT + limits.max_age_us + 1), TokenProblem::kStale);
}

TEST(ProbeTokenTest, TokenAtExactlyTheAllowedSkewAheadIsAcceptedAndMoreIsFuture) {
  const std::string value = Render(SignedFields());
  const TokenLimits limits;
  EXPECT_EQ(Check(value, kT - limits.max_future_us), TokenProblem::kNone);
  EXPECT_EQ(Check(value, kT - limits.max_future_us - 1), TokenProblem::kFuture);
}

TEST(ProbeTokenTest, LimitsComeFromTheCaller) {
  const std::string value = Render(SignedFields());
  const TokenLimits tight{10 * kSecond, 2 * kSecond};
  auto check = [&](std::int64_t now) {
    return VerifyProbeToken(TestKey(), value, now, tight, nullptr, "mx1").problem;
  };
  EXPECT_EQ(check(kT + 10 * kSecond), TokenProblem::kNone);
  EXPECT_EQ(check(kT + 10 * kSecond + 1), TokenProblem::kStale);
  EXPECT_EQ(check(kT - 2 * kSecond), TokenProblem::kNone);
  EXPECT_EQ(check(kT - 2 * kSecond - 1), TokenProblem::kFuture);
}

TEST(ProbeTokenTest, ExtremeTimesDoNotOverflowTheAgeCheck) {
  const std::string old = SignProbeToken(TestKey(), kId, 0, "probe-1").value();
  const std::string far = SignProbeToken(TestKey(), kId, kMax, "probe-1").value();
  EXPECT_EQ(Check(old, kMax), TokenProblem::kStale);
  EXPECT_EQ(Check(far, kMin), TokenProblem::kFuture);
  EXPECT_EQ(Check(far, 0), TokenProblem::kFuture);
  EXPECT_EQ(Check(old, kMin), TokenProblem::kFuture);
}

TEST(ProbeTokenTest, ReplayAtTheSameHopIsRejectedAndAnotherHopAccepted) {
  ReplayGuard guard;
  const std::string value = Render(SignedFields());
  EXPECT_EQ(Check(value, kT, &guard, "mx1"), TokenProblem::kNone);
  EXPECT_EQ(Check(value, kT + kSecond, &guard, "mx1"), TokenProblem::kReplayed);
  EXPECT_EQ(Check(value, kT + kSecond, &guard, "mx2"), TokenProblem::kNone);
  EXPECT_EQ(Check(value, kT + 2 * kSecond, &guard, "mx2"), TokenProblem::kReplayed);
  // Another spelling of the same token is the same token.
  EXPECT_EQ(Check(Render(SignedFields(), ";\r\n\t") + ";", kT, &guard, "mx1"),
            TokenProblem::kReplayed);
}

TEST(ProbeTokenTest, OnlyATokenThatPassedEverythingElseIsRemembered) {
  ReplayGuard guard;
  const std::string value = Render(SignedFields());
  const ProbeKey other = ProbeKey::FromBytes("another-key-0123456789abcdef012345").value();
  EXPECT_EQ(VerifyProbeToken(other, value, kT, TokenLimits{}, &guard, "mx1").problem,
            TokenProblem::kMac);
  EXPECT_EQ(Check(value, kT - TokenLimits{}.max_future_us - 1, &guard), TokenProblem::kFuture);
  EXPECT_EQ(Check(Render(With(SignedFields(), "v", "2")), kT, &guard), TokenProblem::kVersion);
  EXPECT_EQ(guard.size(), 0u);
  EXPECT_EQ(Check(value, kT, &guard), TokenProblem::kNone);
  EXPECT_EQ(guard.size(), 1u);
}

// A token dated ahead (within the skew) stays fresh past max_age after it was first seen: the
// guard must remember it that much longer, or it could be replayed then.
TEST(ProbeTokenTest, TokenDatedAheadIsStillAReplayAfterTheMaximumAge) {
  ReplayGuard guard;
  const TokenLimits limits;
  const std::string value = Render(SignedFields());
  const std::int64_t first = kT - limits.max_future_us;
  EXPECT_EQ(Check(value, first, &guard), TokenProblem::kNone);
  EXPECT_EQ(Check(value, first + limits.max_age_us + 1, &guard), TokenProblem::kReplayed);
  EXPECT_EQ(Check(value, kT + limits.max_age_us, &guard), TokenProblem::kReplayed);
  EXPECT_EQ(Check(value, kT + limits.max_age_us + 1, &guard), TokenProblem::kStale);
}

TEST(ProbeTokenTest, ProblemNamesAreTheMetricReasons) {
  EXPECT_EQ(TokenProblemName(TokenProblem::kNone), "none");
  EXPECT_EQ(TokenProblemName(TokenProblem::kMalformed), "malformed");
  EXPECT_EQ(TokenProblemName(TokenProblem::kVersion), "version");
  EXPECT_EQ(TokenProblemName(TokenProblem::kMac), "mac");
  EXPECT_EQ(TokenProblemName(TokenProblem::kStale), "stale");
  EXPECT_EQ(TokenProblemName(TokenProblem::kFuture), "future");
  EXPECT_EQ(TokenProblemName(TokenProblem::kReplayed), "replayed");
}

}  // namespace
}  // namespace mailpulse
