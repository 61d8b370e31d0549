// Fuzzes the probe token and hop stamp parsers (shared/probe_token.h) on arbitrary bytes and
// checks what must hold for any input, trapping if it does not:
// - nothing crashes, asserts or reads out of bounds (ASan/UBSan in the fuzz build);
// - VerifyProbeToken says kMalformed exactly when ParseProbeToken fails, and otherwise one of
//   version / mac / none (the input's own time is "now");
// - whatever parses re-signs to a token that parses back to the same fields, verifies, is a
//   replay the second time, and is stale or future just beyond the limits;
// - a parsed hop stamp, and a stamp made from any bytes, parse back to what was written.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "shared/probe_token.h"

namespace {

using mailpulse::TokenProblem;

void Require(bool condition) {
  if (!condition) __builtin_trap();
}

const mailpulse::ProbeKey& FuzzKey() {
  // The seed corpus (corpus/probe_token/) is signed with this key.
  static const mailpulse::ProbeKey key =
      mailpulse::ProbeKey::FromBytes("fuzz-key-0123456789abcdef0123456789").value();
  return key;
}

void CheckResigned(const mailpulse::ProbeToken& token) {
  const mailpulse::TokenLimits limits;
  auto resigned = mailpulse::SignProbeToken(FuzzKey(), token.id, token.time_unix_us, token.source);
  Require(resigned.ok());
  auto again = mailpulse::ParseProbeToken(*resigned);
  Require(again.ok() && again->id == token.id && again->time_unix_us == token.time_unix_us &&
          again->source == token.source && again->version == 1);
  const std::int64_t t = token.time_unix_us;
  mailpulse::ReplayGuard guard(4);
  auto verify = [&](std::int64_t now) {
    return mailpulse::VerifyProbeToken(FuzzKey(), *resigned, now, limits, &guard, "mx1").problem;
  };
  Require(verify(t) == TokenProblem::kNone);
  Require(verify(t) == TokenProblem::kReplayed);
  if (t <= std::numeric_limits<std::int64_t>::max() - limits.max_age_us - 1) {
    Require(verify(t + limits.max_age_us + 1) == TokenProblem::kStale);
  }
  Require(verify(t - limits.max_future_us - 1) == TokenProblem::kFuture);
}

void CheckToken(std::string_view input) {
  auto parsed = mailpulse::ParseProbeToken(input);
  const std::int64_t now = parsed.ok() ? parsed->time_unix_us : 1'795'500'000'000'000;
  const mailpulse::TokenCheck check =
      mailpulse::VerifyProbeToken(FuzzKey(), input, now, mailpulse::TokenLimits{}, nullptr, "mx1");
  Require((check.problem == TokenProblem::kMalformed) == !parsed.ok());
  if (!parsed.ok()) return;
  if (parsed->version != 1) {
    Require(check.problem == TokenProblem::kVersion);
  } else {
    Require(check.problem == TokenProblem::kNone || check.problem == TokenProblem::kMac);
  }
  Require(check.token.id == parsed->id && check.token.mac == parsed->mac);
  CheckResigned(*parsed);
}

void CheckHopStamp(std::string_view input) {
  if (auto fields = mailpulse::ParseHopStamp(input); fields.ok()) {
    auto back = mailpulse::ParseHopStamp(
        mailpulse::HopStamp(fields->hop, fields->time_unix_us, fields->queue_id));
    Require(back.ok() && back->hop == fields->hop && back->queue_id == fields->queue_id &&
            back->time_unix_us == fields->time_unix_us);
  }
  const std::string_view hop = input.substr(0, input.size() / 2);
  const std::string_view qid = input.substr(input.size() / 2);
  Require(mailpulse::ParseHopStamp(mailpulse::HopStamp(hop, 7, qid)).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckToken(input);
  CheckHopStamp(input);
  return 0;
}
