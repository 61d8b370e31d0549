// Which hosts receive mail for a domain, in the order to try them: the pure part of an MX
// lookup (RFC 5321 section 5.1, RFC 7505). It turns what the DNS said (records, no records,
// no such domain) into an ordered list of host names or a clear error: sorted by preference,
// equal preferences shuffled with an injected random source (so tests are deterministic), the
// implicit MX when there is no MX record, the null MX, a bound on the number of hosts, and
// only well-formed host names from an answer that may be hostile. No I/O, no logging;
// thread-safe (the random source is the caller's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

// At most this many MX hosts are tried (and resolved); the rest of a longer answer is
// dropped after sorting. Real domains have one to a handful.
inline constexpr std::size_t kMaxMxHosts = 10;

// One MX record as the resolver parsed it: `exchange` is untrusted text from the network.
struct MxRecord {
  std::uint16_t preference = 0;
  std::string exchange;
};

// What the DNS answered to "MX of domain?".
struct MxAnswer {
  enum class Kind {
    kRecords,       // NOERROR with MX records in `records`
    kNoRecords,     // NOERROR without MX records (NODATA)
    kNoSuchDomain,  // NXDOMAIN
  };
  Kind kind = Kind::kRecords;
  std::vector<MxRecord> records;
};

// A uniform random index in [0, n) for n >= 1.
using RandomIndex = std::function<std::size_t(std::size_t n)>;

struct MxHosts {
  std::vector<std::string> hosts;  // in the order to try; never empty
  bool implicit = false;           // no MX record: the domain itself (RFC 5321 5.1)
  // Exchanges that were not host names, made printable ("ba\x07d.example."), for a log line.
  std::vector<std::string> rejected;
};

// The hosts to try for `domain` (a host name without the trailing dot), or why there are
// none: "example.org: no such domain (NXDOMAIN)", "example.org: domain accepts no mail (null
// MX, RFC 7505)", "example.org: no usable MX host (...)". Host names come back without the
// trailing dot; a host listed twice is tried once, at its best preference.
StatusOr<MxHosts> MxHostsToTry(std::string_view domain, const MxAnswer& answer,
                               const RandomIndex& random);

// Whether `name` (an optional trailing dot allowed) is a host name as RFC 1123 section 2.1
// has them: dot-separated labels of letters, digits and hyphens, no hyphen at either end of a
// label, labels of 1..63 and names up to 253 characters.
bool IsHostName(std::string_view name);

}  // namespace mailpulse
