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
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "shared/status.h"

namespace mailpulse {

inline constexpr std::string_view kProbeTokenHeader = "X-Mailpulse-Probe";
inline constexpr std::string_view kHopStampHeader = "X-Mailpulse-Hop";

// The shared secret. A key file holds the key as text on its one line (at least 32
// characters, e.g. 64 hex digits from `mailpulse-probe keygen`); the trailing line end is not
// part of it. Never logged, never in metrics or events; wiped from memory when a ProbeKey
// lets go of it (destroyed or assigned over).
class ProbeKey {
 public:
  // The rules of a password file (ReadSecretFile, shared/secret_file.h): refuses a file that
  // is not a regular file, that group or others may read ("readable by others; chmod 600 it"),
  // that is empty or holds more than one line; and a key shorter than 32 bytes. Errors name
  // the path, never the contents.
  static StatusOr<ProbeKey> Load(const std::string& path);
  // For tests and keygen: a key from bytes (at least 32).
  static StatusOr<ProbeKey> FromBytes(std::string_view bytes);

  // 32 random bytes (OpenSSL RAND_bytes) as 64 lowercase hex digits: what keygen writes.
  // Empty if the random generator fails (never a weak key); FromBytes refuses the empty text.
  static std::string Generate();

  ProbeKey(const ProbeKey&) = default;
  ProbeKey(ProbeKey&&) noexcept = default;  // the moved-from string is left empty
  ProbeKey& operator=(const ProbeKey& other);
  ProbeKey& operator=(ProbeKey&& other) noexcept;
  ~ProbeKey();

 private:
  friend std::string ProbeTokenMac(const ProbeKey& key, std::string_view canonical);
  explicit ProbeKey(std::string bytes) : bytes_(std::move(bytes)) {}
  void Wipe() noexcept;
  std::string bytes_;
};

struct ProbeToken {
  int version = 1;
  std::string id;  // 32 lowercase hex digits
  std::int64_t time_unix_us = 0;
  std::string source;  // the probe's name
  std::string mac;     // base64, as received (empty before signing)
};

// "v=1;id=...;t=...;src=..." — what the MAC covers: rebuilt from the parsed fields, so
// folding, spacing, field order, the case of names and of id, and unknown fields are not
// covered (none of them changes what the token says).
std::string CanonicalProbeToken(const ProbeToken& token);
// base64(HMAC-SHA256(key, canonical)): 44 characters. Empty if OpenSSL fails (never expected).
std::string ProbeTokenMac(const ProbeKey& key, std::string_view canonical);

// The header value (without "X-Mailpulse-Probe: ") of a signed token, fields in the order of
// the format above. `id` must be 32 hex digits (written in lower case), `source` a valid
// source name (letters, digits, . _ - :, 1 to 64) and `time_unix_us` not negative; all come
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
// "none", "malformed", "version", "mac", "stale", "future", "replayed".
std::string_view TokenProblemName(TokenProblem p);

// Parses a header value (the tag list of shared/tag_list.h: folding CRLF/LF + WSP allowed
// anywhere whitespace is; a value over 1024 bytes is not looked at and is an error). Checks the
// grammar only, not the MAC or the version: v and t are decimal without sign or leading zeros,
// id 32 hex digits (returned in lower case), src as for SignProbeToken, mac the canonical
// base64 of 32 bytes (44 characters with one '='). Errors never quote the value.
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
// replay within the age is recognised; memory is bounded by `max_entries` (at least 1; the
// oldest are forgotten first, and then cannot be recognised as replays: the bound is logged by
// callers through `evicted()`). Each call is O(1) amortised.
//
// Times only move forward inside the guard: a `now` earlier than one already seen (threads
// race for the lock with their own clock readings; a clock stepped back) counts as that
// latest time, so an entry is never forgotten early.
class ReplayGuard {
 public:
  explicit ReplayGuard(std::size_t max_entries = 100000);
  // True (and remembered) if (id, hop) was not seen since now - max_age; false for a replay.
  // An entry first seen at T is a replay up to and including T + max_age.
  bool FirstSighting(std::string_view id, std::string_view hop, std::int64_t now_unix_us,
                     std::int64_t max_age_us);
  std::size_t size() const;
  std::uint64_t evicted() const;

 private:
  struct Seen {
    const std::string* key;  // the element of seen_ (stable: node-based)
    std::int64_t at_us;
  };
  void Expire(std::int64_t now_unix_us, std::int64_t max_age_us);
  void Forget(const std::string& key);

  const std::size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_set<std::string> seen_;  // length-prefixed id, then hop: unambiguous
  std::deque<Seen> order_;                // oldest first, times never decreasing
  std::int64_t latest_us_ = std::numeric_limits<std::int64_t>::min();
  std::uint64_t evicted_ = 0;
};

// Parses and checks a header value: grammar, version, MAC (constant time), age against
// `now_unix_us` (stale when now - t > max_age_us, future when t - now > max_future_us; either
// limit exactly is accepted), and — when `guard` is given — replay of (id, hop). A token is
// only remembered by the guard once everything else passed, and for max_age_us +
// max_future_us: a token dated up to max_future_us ahead stays fresh that much longer.
TokenCheck VerifyProbeToken(const ProbeKey& key, std::string_view header_value,
                            std::int64_t now_unix_us, const TokenLimits& limits, ReplayGuard* guard,
                            std::string_view hop);

// The hop stamp header value: "hop=<hop>; t=<unix µs>; qid=<queue id>". The queue id comes
// from the MTA, so the stamp is made safe rather than refused: in hop and queue id each byte
// other than a letter, digit, '.', '_', ':' or '-' becomes '_', each is cut to 64 bytes and an
// empty one is written "-"; a negative time is written 0. What ParseHopStamp reads back is then
// exactly what was written.
std::string HopStamp(std::string_view hop, std::int64_t time_unix_us, std::string_view queue_id);

struct HopStampFields {
  std::string hop;
  std::int64_t time_unix_us = 0;
  std::string queue_id;
};
// Parses a hop stamp (what an IMAP confirmation reads back from a delivered message) with the
// probe token's grammar: hop and qid 1 to 64 letters, digits, '.', '_', ':' or '-'; t decimal.
StatusOr<HopStampFields> ParseHopStamp(std::string_view header_value);

}  // namespace mailpulse
