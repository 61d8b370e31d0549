#include "milter/core/client_classifier.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace mailpulse {

std::string_view DirectionName(Direction d) {
  switch (d) {
    case Direction::kInbound:
      return "inbound";
    case Direction::kOutbound:
      return "outbound";
    case Direction::kLocal:
      return "local";
  }
  return "inbound";
}

IpAddress IpAddress::FromIpv4(const std::uint8_t (&octets)[4]) {
  IpAddress a;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  std::copy(octets, octets + 4, a.bytes.begin() + 12);
  return a;
}

IpAddress IpAddress::FromIpv6(const std::uint8_t (&octets)[16]) {
  IpAddress a;
  std::copy(octets, octets + 16, a.bytes.begin());
  return a;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.size() > 5 && (text.substr(0, 5) == "IPv6:" || text.substr(0, 5) == "ipv6:")) {
    text = text.substr(5);
  }
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::uint8_t v4[4];
  if (inet_pton(AF_INET, buf, v4) == 1) return FromIpv4(v4);
  std::uint8_t v6[16];
  if (inet_pton(AF_INET6, buf, v6) == 1) return FromIpv6(v6);
  return std::nullopt;
}

bool IpAddress::IsIpv4Mapped() const {
  static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(kPrefix, kPrefix + 12, bytes.begin());
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (IsIpv4Mapped()) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

StatusOr<IpNetwork> IpNetwork::Parse(std::string_view cidr) {
  auto bad = [&] { return Status::Error("'" + std::string(cidr) + "' is not a network (CIDR)"); };
  std::string_view addr_text = cidr;
  std::optional<int> prefix;
  if (auto slash = cidr.find('/'); slash != std::string_view::npos) {
    addr_text = cidr.substr(0, slash);
    std::string_view bits = cidr.substr(slash + 1);
    int value = -1;
    auto [ptr, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), value);
    if (ec != std::errc() || ptr != bits.data() + bits.size() || bits.empty()) return bad();
    prefix = value;
  }
  std::optional<IpAddress> base = IpAddress::Parse(addr_text);
  if (!base) return bad();
  const bool v4 = base->IsIpv4Mapped() && addr_text.find(':') == std::string_view::npos;
  const int max_bits = v4 ? 32 : 128;
  const int bits = prefix.value_or(max_bits);
  if (bits < 0 || bits > max_bits) return bad();
  IpNetwork n;
  n.base = *base;
  n.prefix_bits = v4 ? bits + 96 : bits;
  // Clear host bits so Contains() can compare masked bytes directly.
  for (int i = n.prefix_bits; i < 128; ++i) {
    n.base.bytes[i / 8] &= static_cast<std::uint8_t>(~(0x80u >> (i % 8)));
  }
  return n;
}

bool IpNetwork::Contains(const IpAddress& a) const {
  const int full = prefix_bits / 8;
  if (!std::equal(base.bytes.begin(), base.bytes.begin() + full, a.bytes.begin())) return false;
  const int rest = prefix_bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xffu << (8 - rest));
  return (a.bytes[full] & mask) == base.bytes[full];
}

StatusOr<ClientClassifier> ClientClassifier::Create(
    const std::vector<std::string>& trusted_networks) {
  ClientClassifier c;
  for (const std::string& entry : trusted_networks) {
    StatusOr<IpNetwork> n = IpNetwork::Parse(entry);
    if (!n.ok()) return n.status();
    c.trusted_.push_back(*n);
  }
  return c;
}

bool ClientClassifier::IsLocalSubmission(const ClientEndpoint& c) const {
  if (!c.address || c.port != 0) return false;
  static const IpAddress kV4Loopback = *IpAddress::Parse("127.0.0.1");
  static const IpAddress kV6Loopback = *IpAddress::Parse("::1");
  return c.address->bytes == kV4Loopback.bytes || c.address->bytes == kV6Loopback.bytes;
}

bool ClientClassifier::IsTrusted(const ClientEndpoint& c) const {
  if (!c.address) return false;
  return std::any_of(trusted_.begin(), trusted_.end(),
                     [&](const IpNetwork& n) { return n.Contains(*c.address); });
}

Direction ClientClassifier::Classify(const ClientEndpoint& c) const {
  if (IsLocalSubmission(c)) return Direction::kLocal;
  if (IsTrusted(c)) return Direction::kOutbound;
  return Direction::kInbound;
}

}  // namespace mailpulse
