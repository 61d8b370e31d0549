// The probe token: the one header every probe message carries, signed with a key the probe
// and the milters share (DESIGN "Probe token"; docs/roundtrip.md):
//
//   X-Mailpulse-Probe: v=1; id=<32 lowercase hex>; t=<unix µs>; src=<probe name>; mac=<base64>
//
// mac is HMAC-SHA256 (OpenSSL) over the canonical fields, "v=1;id=<id>;t=<t>;src=<src>", in
// standard base64 with padding. Parsing is forgiving where mail is (folded header values,
// whitespace around ';' and '=', field names in any case, fields in any order, unknown fields
// ignored) and strict where forgery lives (each known field exactly once, id exactly 32 hex
// digits, t decimal, src a short printable name, the MAC compared in constant time). A token
// older than the allowed age or too far in the future is stale; an (id, hop) already seen
// within the age is a replay. Verification never trusts a token it could not fully check.
//
// ProbeKey, SignProbeToken, ParseProbeToken and VerifyProbeToken are thread-safe (a key is
// immutable once loaded). ReplayGuard is thread-safe: milter threads share one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "shared/status.h"

namespace mailpulse {

inline constexpr std::string_view kProbeTokenHeader = "X-Mailpulse-Probe";
inline constexpr std::string_view kHopStampHeader = "X-Mailpulse-Hop";

// The shared secret. A key file holds the key as text on its first line (at least 32
// characters, e.g. 64 hex digits from `mailpulse-probe keygen`); the trailing line end is not
// part of it. Never logged, never in metrics or events.
class ProbeKey {
 public:
  // Refuses a file that is not a regular file, that group or others may read ("readable by
  // others; chmod 600 it"), or whose key is shorter than 32 bytes. Errors name the path, never
  // the contents.
  static StatusOr<ProbeKey> Load(const std::string& path);
  // For tests and keygen: a key from bytes (at least 32).
  static StatusOr<ProbeKey> FromBytes(std::string_view bytes);

  // 32 random bytes (OpenSSL RAND_bytes) as 64 lowercase hex digits: what keygen writes.
  static std::string Generate();

 private:
  friend std::string ProbeTokenMac(const ProbeKey& key, std::string_view canonical);
  explicit ProbeKey(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

struct ProbeToken {
  int version = 1;
  std::string id;  // 32 lowercase hex digits
  std::int64_t time_unix_us = 0;
  std::string source;  // the probe's name
  std::string mac;     // base64, as received (empty before signing)
};

// "v=1;id=...;t=...;src=..." — what the MAC covers.
std::string CanonicalProbeToken(const ProbeToken& token);
// base64(HMAC-SHA256(key, canonical)).
std::string ProbeTokenMac(const ProbeKey& key, std::string_view canonical);

// The header value (without "X-Mailpulse-Probe: ") of a signed token. `id` must be 32 hex
// digits and `source` a valid source name (letters, digits, . _ - :, at most 64); both come
// from our own code, so a bad one is returned as an error rather than signed.
StatusOr<std::string> SignProbeToken(const ProbeKey& key, std::string_view id,
                                     std::int64_t time_unix_us, std::string_view source);

// Why a token is not accepted; the metric label values (`reason`).
enum class TokenProblem {
  kNone,
  kMalformed,  // not the grammar above: missing, repeated or bad fields, over-long value
  kVersion,    // v is not 1
  kMac,        // the MAC does not match: forged, tampered with, or another key
  kStale,      // older than the allowed age
  kFuture,     // further in the future than the allowed clock skew
  kReplayed,   // this (id, hop) was already seen within the allowed age
};
std::string_view TokenProblemName(TokenProblem p);  // "malformed", "mac", ...

// Parses a header value (folding CRLF/LF + WSP allowed anywhere whitespace is). Checks the
// grammar only, not the MAC; at most 1024 bytes are looked at.
StatusOr<ProbeToken> ParseProbeToken(std::string_view header_value);

struct TokenCheck {
  TokenProblem problem = TokenProblem::kNone;
  ProbeToken token;  // filled in as far as parsing got
};

struct TokenLimits {
  std::int64_t max_age_us = 3600LL * 1000000;    // a probe message older than 1 h is stale
  std::int64_t max_future_us = 300LL * 1000000;  // clocks may be 5 min apart
};

// Remembers the (id, hop) pairs of accepted tokens until they would be stale anyway, so a
// replay within the age is recognised; memory is bounded by `max_entries` (the oldest are
// forgotten first, and then cannot be recognised as replays: the bound is logged by callers
// through `evicted()`).
class ReplayGuard {
 public:
  explicit ReplayGuard(std::size_t max_entries = 100000);
  // True (and remembered) if (id, hop) was not seen since now - max_age; false for a replay.
  bool FirstSighting(std::string_view id, std::string_view hop, std::int64_t now_unix_us,
                     std::int64_t max_age_us);
  std::size_t size() const;
  std::uint64_t evicted() const;

 private:
  struct Seen {
    std::string key;
    std::int64_t at_us;
  };
  void Expire(std::int64_t now_unix_us, std::int64_t max_age_us);

  const std::size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::int64_t> seen_;  // "id/hop" -> first seen
  std::deque<Seen> order_;                              // oldest first
  std::uint64_t evicted_ = 0;
};

// Parses and checks a header value: grammar, version, MAC (constant time), age against
// `now_unix_us`, and — when `guard` is given — replay of (id, hop). A token is only
// remembered by the guard once everything else passed.
TokenCheck VerifyProbeToken(const ProbeKey& key, std::string_view header_value,
                            std::int64_t now_unix_us, const TokenLimits& limits, ReplayGuard* guard,
                            std::string_view hop);

// The hop stamp header value: "hop=<hop>; t=<unix µs>; qid=<queue id>".
std::string HopStamp(std::string_view hop, std::int64_t time_unix_us, std::string_view queue_id);

struct HopStampFields {
  std::string hop;
  std::int64_t time_unix_us = 0;
  std::string queue_id;
};
// Parses a hop stamp (what an IMAP confirmation reads back from a delivered message).
StatusOr<HopStampFields> ParseHopStamp(std::string_view header_value);

}  // namespace mailpulse
