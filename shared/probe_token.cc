// The probe token and the hop stamp (shared/probe_token.h). The grammar is the tag list of
// shared/tag_list.h; this file adds the fields' own rules, the MAC and the checks in order.
#include "shared/probe_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <vector>

#include "shared/secret_file.h"
#include "shared/tag_list.h"

namespace mailpulse {
namespace {

constexpr std::size_t kMinKeyLength = 32;
constexpr std::size_t kIdLength = 32;
constexpr std::size_t kMaxNameLength = 64;  // src, hop, qid
constexpr std::size_t kMacBytes = 32;       // SHA-256
constexpr std::size_t kMacLength = 44;      // base64 of 32 bytes: 43 symbols and one '='
constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kHexDigits[] = "0123456789abcdef";

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// The characters of a probe source, a hop and a queue id: safe in a header, a metric label and
// a log line.
bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

bool IsName(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameLength && std::all_of(s.begin(), s.end(), IsNameChar);
}

bool IsId(std::string_view s) {
  return s.size() == kIdLength && std::all_of(s.begin(), s.end(), IsHex);
}

std::string LowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

std::string Base64(const unsigned char* data, std::size_t size) {
  std::string out;
  for (std::size_t i = 0; i < size; i += 3) {
    const std::size_t n = std::min<std::size_t>(3, size - i);
    std::uint32_t group = static_cast<std::uint32_t>(data[i]) << 16;
    if (n > 1) group |= static_cast<std::uint32_t>(data[i + 1]) << 8;
    if (n > 2) group |= data[i + 2];
    for (std::size_t k = 0; k < 4; ++k) {
      out += k <= n ? kBase64[(group >> (18 - 6 * k)) & 0x3f] : '=';
    }
  }
  return out;
}

int Base64Value(char c) {
  const char* p = std::find(kBase64, kBase64 + 64, c);
  return p == kBase64 + 64 ? -1 : static_cast<int>(p - kBase64);
}

// Whether `text` is the one base64 spelling of 32 bytes: 43 symbols, '=', and the 2 bits the
// last symbol carries beyond the 256 zero (RFC 4648 3.5), so a MAC has no second spelling.
bool IsMacText(std::string_view text) {
  if (text.size() != kMacLength || text.back() != '=') return false;
  for (std::size_t i = 0; i + 1 < kMacLength; ++i) {
    if (Base64Value(text[i]) < 0) return false;
  }
  return (Base64Value(text[kMacLength - 2]) & 0x3) == 0;
}

// A decimal of 1 to `max_digits` digits: no sign, no leading zero (but "0"), no junk.
StatusOr<std::int64_t> ParseDecimal(std::string_view text, std::size_t max_digits) {
  std::int64_t value = 0;
  const bool digits =
      !text.empty() && text.size() <= max_digits &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || (text.size() > 1 && text.front() == '0')) return Status::Error("not a decimal");
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return Status::Error("too large");
  return value;
}

Status BadField(std::string_view what, std::string_view name, std::string_view rule) {
  return Status::Error(std::string(what) + ": field '" + std::string(name) + "' " +
                       std::string(rule));
}

// The value of the known field `name`, which must be given exactly once.
Status TakeField(const std::vector<Tag>& tags, std::string_view what, std::string_view name,
                 std::string_view* value) {
  StatusOr<std::string_view> found = UniqueTag(tags, name);
  if (!found.ok()) return Status::Error(std::string(what) + ": " + found.status().message());
  *value = *found;
  return Status::Ok();
}

constexpr std::string_view kToken = "probe token";
constexpr std::string_view kNameRule = "is not 1 to 64 letters, digits, '.', '_', ':' or '-'";

// Fills *token field by field, in the order of the format, up to the first bad one.
Status ParseTokenInto(std::string_view header_value, ProbeToken* token) {
  StatusOr<std::vector<Tag>> tags = ParseTagList(header_value);
  if (!tags.ok()) return Status::Error(std::string(kToken) + " " + tags.status().message());
  std::string_view v, id, t, src, mac;
  if (Status s = TakeField(*tags, kToken, "v", &v); !s.ok()) return s;
  StatusOr<std::int64_t> version = ParseDecimal(v, 9);
  if (!version.ok()) return BadField(kToken, "v", "is not a version number");
  token->version = static_cast<int>(*version);
  if (Status s = TakeField(*tags, kToken, "id", &id); !s.ok()) return s;
  if (!IsId(id)) return BadField(kToken, "id", "is not 32 hex digits");
  token->id = LowerCase(id);
  if (Status s = TakeField(*tags, kToken, "t", &t); !s.ok()) return s;
  StatusOr<std::int64_t> time = ParseDecimal(t, 19);
  if (!time.ok()) return BadField(kToken, "t", "is not a time in microseconds");
  token->time_unix_us = *time;
  if (Status s = TakeField(*tags, kToken, "src", &src); !s.ok()) return s;
  if (!IsName(src)) return BadField(kToken, "src", kNameRule);
  token->source = std::string(src);
  if (Status s = TakeField(*tags, kToken, "mac", &mac); !s.ok()) return s;
  if (!IsMacText(mac)) return BadField(kToken, "mac", "is not the base64 of 32 bytes");
  token->mac = std::string(mac);
  return Status::Ok();
}

// a - b, saturated to the int64 range (times from the wire may be anything).
std::int64_t SaturatingSub(std::int64_t a, std::int64_t b) {
  std::int64_t d = 0;
  if (!__builtin_sub_overflow(a, b, &d)) return d;
  return a > b ? std::numeric_limits<std::int64_t>::max()
               : std::numeric_limits<std::int64_t>::min();
}

std::int64_t SaturatingAdd(std::int64_t a, std::int64_t b) {
  std::int64_t d = 0;
  if (!__builtin_add_overflow(a, b, &d)) return d;
  return b > 0 ? std::numeric_limits<std::int64_t>::max()
               : std::numeric_limits<std::int64_t>::min();
}

// kStale, kFuture or kNone; a token exactly at either limit is accepted.
TokenProblem AgeProblem(std::int64_t t, std::int64_t now, const TokenLimits& limits) {
  if (SaturatingSub(now, t) > limits.max_age_us) return TokenProblem::kStale;
  if (SaturatingSub(t, now) > limits.max_future_us) return TokenProblem::kFuture;
  return TokenProblem::kNone;
}

// How long the guard must remember a token first seen now: it is fresh until t + max_age, and
// t may be up to max_future ahead of now.
std::int64_t ReplayWindow(const TokenLimits& limits) {
  return SaturatingAdd(limits.max_age_us, std::max<std::int64_t>(limits.max_future_us, 0));
}

bool MacMatches(const ProbeKey& key, const ProbeToken& token) {
  const std::string expected = ProbeTokenMac(key, CanonicalProbeToken(token));
  return !expected.empty() && expected.size() == token.mac.size() &&
         CRYPTO_memcmp(expected.data(), token.mac.data(), expected.size()) == 0;
}

// A hop stamp's hop or queue id made safe (see HopStamp).
std::string SafeName(std::string_view s) {
  if (s.empty()) return "-";
  std::string out(s.substr(0, kMaxNameLength));
  for (char& c : out) {
    if (!IsNameChar(c)) c = '_';
  }
  return out;
}

}  // namespace

StatusOr<ProbeKey> ProbeKey::Load(const std::string& path) {
  StatusOr<std::string> text = ReadSecretFile(path, "key file");
  if (!text.ok()) return text.status();
  if (text->size() < kMinKeyLength) {
    OPENSSL_cleanse(text->data(), text->size());
    return Status::Error("key file " + path +
                         " holds a key shorter than 32 bytes; `mailpulse-probe keygen` makes one");
  }
  return ProbeKey(std::move(*text));
}

StatusOr<ProbeKey> ProbeKey::FromBytes(std::string_view bytes) {
  if (bytes.size() < kMinKeyLength) return Status::Error("a probe key needs at least 32 bytes");
  return ProbeKey(std::string(bytes));
}

std::string ProbeKey::Generate() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return "";
  std::string hex;
  hex.reserve(2 * sizeof bytes);
  for (unsigned char b : bytes) {
    hex += kHexDigits[b >> 4];
    hex += kHexDigits[b & 0xf];
  }
  OPENSSL_cleanse(bytes, sizeof bytes);
  return hex;
}

void ProbeKey::Wipe() noexcept { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

ProbeKey& ProbeKey::operator=(const ProbeKey& other) {
  if (this != &other) {
    Wipe();  // the old buffer may be freed by the copy
    bytes_ = other.bytes_;
  }
  return *this;
}

ProbeKey& ProbeKey::operator=(ProbeKey&& other) noexcept {
  if (this != &other) {
    Wipe();  // the old buffer may go to `other`, or be freed
    bytes_ = std::move(other.bytes_);
  }
  return *this;
}

ProbeKey::~ProbeKey() { Wipe(); }

std::string CanonicalProbeToken(const ProbeToken& token) {
  return "v=" + std::to_string(token.version) + ";id=" + token.id +
         ";t=" + std::to_string(token.time_unix_us) + ";src=" + token.source;
}

std::string ProbeTokenMac(const ProbeKey& key, std::string_view canonical) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (HMAC(EVP_sha256(), key.bytes_.data(), static_cast<int>(key.bytes_.size()),
           reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size(), mac,
           &size) == nullptr ||
      size != kMacBytes) {
    return "";
  }
  return Base64(mac, size);
}

StatusOr<std::string> SignProbeToken(const ProbeKey& key, std::string_view id,
                                     std::int64_t time_unix_us, std::string_view source) {
  if (!IsId(id)) return Status::Error("cannot sign a probe token: the id is not 32 hex digits");
  if (!IsName(source)) {
    return Status::Error("cannot sign a probe token: the source name " + std::string(kNameRule));
  }
  if (time_unix_us < 0) return Status::Error("cannot sign a probe token: the time is negative");
  ProbeToken token;
  token.id = LowerCase(id);
  token.time_unix_us = time_unix_us;
  token.source = std::string(source);
  token.mac = ProbeTokenMac(key, CanonicalProbeToken(token));
  if (token.mac.empty()) return Status::Error("cannot sign a probe token: HMAC-SHA256 failed");
  return "v=1; id=" + token.id + "; t=" + std::to_string(time_unix_us) + "; src=" + token.source +
         "; mac=" + token.mac;
}

std::string_view TokenProblemName(TokenProblem p) {
  switch (p) {
    case TokenProblem::kNone:
      return "none";
    case TokenProblem::kMalformed:
      return "malformed";
    case TokenProblem::kVersion:
      return "version";
    case TokenProblem::kMac:
      return "mac";
    case TokenProblem::kStale:
      return "stale";
    case TokenProblem::kFuture:
      return "future";
    case TokenProblem::kReplayed:
      return "replayed";
  }
  return "malformed";  // not reached: every value is named above
}

StatusOr<ProbeToken> ParseProbeToken(std::string_view header_value) {
  ProbeToken token;
  if (Status s = ParseTokenInto(header_value, &token); !s.ok()) return s;
  return token;
}

TokenCheck VerifyProbeToken(const ProbeKey& key, std::string_view header_value,
                            std::int64_t now_unix_us, const TokenLimits& limits, ReplayGuard* guard,
                            std::string_view hop) {
  TokenCheck check;
  const ProbeToken& token = check.token;
  if (!ParseTokenInto(header_value, &check.token).ok()) {
    check.problem = TokenProblem::kMalformed;
  } else if (token.version != 1) {
    check.problem = TokenProblem::kVersion;
  } else if (!MacMatches(key, token)) {
    check.problem = TokenProblem::kMac;
  } else if (TokenProblem age = AgeProblem(token.time_unix_us, now_unix_us, limits);
             age != TokenProblem::kNone) {
    check.problem = age;
  } else if (guard != nullptr &&
             !guard->FirstSighting(token.id, hop, now_unix_us, ReplayWindow(limits))) {
    check.problem = TokenProblem::kReplayed;
  }
  return check;
}

ReplayGuard::ReplayGuard(std::size_t max_entries)
    : max_entries_(std::max<std::size_t>(max_entries, 1)) {}

bool ReplayGuard::FirstSighting(std::string_view id, std::string_view hop, std::int64_t now_unix_us,
                                std::int64_t max_age_us) {
  std::string key = std::to_string(id.size()) + "/" + std::string(id) + std::string(hop);
  std::lock_guard<std::mutex> lock(mu_);
  latest_us_ = std::max(latest_us_, now_unix_us);
  Expire(latest_us_, max_age_us);
  if (seen_.contains(key)) return false;
  if (seen_.size() >= max_entries_) {
    Forget(*order_.front().key);
    order_.pop_front();
    ++evicted_;
  }
  const std::string& stored = *seen_.insert(std::move(key)).first;
  order_.push_back({&stored, latest_us_});
  return true;
}

std::size_t ReplayGuard::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_.size();
}

std::uint64_t ReplayGuard::evicted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evicted_;
}

void ReplayGuard::Expire(std::int64_t now_unix_us, std::int64_t max_age_us) {
  const std::int64_t cutoff = SaturatingSub(now_unix_us, max_age_us);
  while (!order_.empty() && order_.front().at_us < cutoff) {
    Forget(*order_.front().key);
    order_.pop_front();
  }
}

// Erases by iterator: the key passed in is the element's own, so it must not be used after.
void ReplayGuard::Forget(const std::string& key) {
  auto it = seen_.find(key);
  if (it != seen_.end()) seen_.erase(it);
}

std::string HopStamp(std::string_view hop, std::int64_t time_unix_us, std::string_view queue_id) {
  return "hop=" + SafeName(hop) + "; t=" + std::to_string(std::max<std::int64_t>(time_unix_us, 0)) +
         "; qid=" + SafeName(queue_id);
}

StatusOr<HopStampFields> ParseHopStamp(std::string_view header_value) {
  constexpr std::string_view kStamp = "hop stamp";
  StatusOr<std::vector<Tag>> tags = ParseTagList(header_value);
  if (!tags.ok()) return Status::Error(std::string(kStamp) + " " + tags.status().message());
  std::string_view hop, t, qid;
  if (Status s = TakeField(*tags, kStamp, "hop", &hop); !s.ok()) return s;
  if (!IsName(hop)) return BadField(kStamp, "hop", kNameRule);
  if (Status s = TakeField(*tags, kStamp, "t", &t); !s.ok()) return s;
  StatusOr<std::int64_t> time = ParseDecimal(t, 19);
  if (!time.ok()) return BadField(kStamp, "t", "is not a time in microseconds");
  if (Status s = TakeField(*tags, kStamp, "qid", &qid); !s.ok()) return s;
  if (!IsName(qid)) return BadField(kStamp, "qid", kNameRule);
  HopStampFields fields;
  fields.hop = std::string(hop);
  fields.time_unix_us = *time;
  fields.queue_id = std::string(qid);
  return fields;
}

}  // namespace mailpulse
