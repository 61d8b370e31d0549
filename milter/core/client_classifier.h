// ClientClassifier decides the traffic direction of an SMTP client: local (mail submitted with
// sendmail(1), which Postfix's cleanup presents to non_smtpd_milters as a connection from
// 127.0.0.1 port 0), outbound (a client in the configured trusted networks, like Postfix's
// mynetworks, or one that authenticated with SASL), or inbound (everyone else).
//
// Immutable after construction, so one instance is shared by every milter thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

enum class Direction : std::uint8_t { kInbound = 0, kOutbound = 1, kLocal = 2 };
inline constexpr int kDirectionCount = 3;
std::string_view DirectionName(Direction d);

// An IPv4 or IPv6 address; IPv4 is held as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), so
// "10.0.0.0/8" also matches a client that Postfix reports as ::ffff:10.1.2.3.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};

  // Accepts dotted IPv4, IPv6 (with or without brackets and an "IPv6:" prefix).
  static std::optional<IpAddress> Parse(std::string_view text);
  static IpAddress FromIpv4(const std::uint8_t (&octets)[4]);
  static IpAddress FromIpv6(const std::uint8_t (&octets)[16]);
  bool IsIpv4Mapped() const;
  std::string ToString() const;
};

struct IpNetwork {
  IpAddress base;
  int prefix_bits = 0;  // of the 128-bit (mapped) form

  // "10.0.0.0/8", "2001:db8::/32", or a bare address meaning a single host.
  static StatusOr<IpNetwork> Parse(std::string_view cidr);
  bool Contains(const IpAddress& a) const;
};

// What the MTA told us at connect time.
struct ClientEndpoint {
  std::optional<IpAddress> address;  // absent for unknown families (e.g. a unix socket client)
  std::uint16_t port = 0;
};

class ClientClassifier {
 public:
  // Error names the first entry that is not a network.
  static StatusOr<ClientClassifier> Create(const std::vector<std::string>& trusted_networks);

  // Local submissions are 127.0.0.1 (or ::1) with port 0: a TCP client never has port 0.
  bool IsLocalSubmission(const ClientEndpoint& c) const;
  bool IsTrusted(const ClientEndpoint& c) const;
  // Direction before authentication is known.
  Direction Classify(const ClientEndpoint& c) const;

 private:
  std::vector<IpNetwork> trusted_;
};

}  // namespace mailpulse
