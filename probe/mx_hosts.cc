#include "probe/mx_hosts.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "probe/smtp/smtp_text.h"

namespace mailpulse {
namespace {

constexpr std::size_t kMaxNameLength = 253;
constexpr std::size_t kMaxLabelLength = 63;
constexpr std::size_t kMaxShownLength = 80;  // of a rejected name in an error or log line

std::string WithoutTrailingDot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return std::string(name);
}

bool SameHost(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 7505 section 3: the exchange "." (c-ares gives the root name as "").
bool IsRoot(std::string_view exchange) { return exchange.empty() || exchange == "."; }

// RFC 5321 5.1: lowest preference first; "if there are multiple destinations with the same
// preference and there is no clear reason to favor one ... the sender-SMTP MUST randomize
// them to spread the load". Fisher-Yates within each run of equal preference.
void SortByPreference(std::vector<MxRecord>* records, const RandomIndex& random) {
  std::stable_sort(records->begin(), records->end(), [](const MxRecord& a, const MxRecord& b) {
    return a.preference < b.preference;
  });
  for (std::size_t begin = 0; begin < records->size();) {
    std::size_t end = begin + 1;
    while (end < records->size() && (*records)[end].preference == (*records)[begin].preference) {
      ++end;
    }
    for (std::size_t n = end - begin; n > 1; --n) {
      const std::size_t pick = std::min(random(n), n - 1);  // a bad source cannot overrun
      std::swap((*records)[begin + n - 1], (*records)[begin + pick]);
    }
    begin = end;
  }
}

}  // namespace

bool IsHostName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > kMaxNameLength) return false;
  std::size_t label_start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      const auto c = static_cast<unsigned char>(name[i]);
      if (!std::isalnum(c) && c != '-') return false;
      continue;
    }
    const std::string_view label = name.substr(label_start, i - label_start);
    if (label.empty() || label.size() > kMaxLabelLength) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    label_start = i + 1;
  }
  return true;
}

StatusOr<MxHosts> MxHostsToTry(std::string_view domain, const MxAnswer& answer,
                               const RandomIndex& random) {
  const std::string name = WithoutTrailingDot(domain);
  MxHosts result;
  if (answer.kind == MxAnswer::Kind::kNoSuchDomain) {
    return Status::Error(name + ": no such domain (NXDOMAIN)");
  }
  // RFC 5321 5.1: no MX records at all: the domain is its own mail exchanger (implicit MX).
  if (answer.kind == MxAnswer::Kind::kNoRecords || answer.records.empty()) {
    result.hosts.push_back(name);
    result.implicit = true;
    return result;
  }
  // RFC 7505 section 4.1: a null MX means the domain accepts no mail. A "." mixed with real
  // exchanges breaks section 3's "MUST NOT" and is skipped like any other unusable entry.
  if (std::all_of(answer.records.begin(), answer.records.end(),
                  [](const MxRecord& r) { return IsRoot(r.exchange); })) {
    return Status::Error(name + ": domain accepts no mail (null MX, RFC 7505)");
  }
  std::vector<MxRecord> records = answer.records;
  SortByPreference(&records, random);
  for (const MxRecord& record : records) {
    if (IsRoot(record.exchange)) continue;
    if (!IsHostName(record.exchange)) {
      result.rejected.push_back(Printable(record.exchange, kMaxShownLength));
      continue;
    }
    std::string host = WithoutTrailingDot(record.exchange);
    const bool seen = std::any_of(result.hosts.begin(), result.hosts.end(),
                                  [&host](const std::string& h) { return SameHost(h, host); });
    if (!seen && result.hosts.size() < kMaxMxHosts) result.hosts.push_back(std::move(host));
  }
  if (result.hosts.empty()) {
    return Status::Error(name + ": no usable MX host ('" + result.rejected.front() +
                         "' is not a host name)");
  }
  return result;
}

}  // namespace mailpulse
