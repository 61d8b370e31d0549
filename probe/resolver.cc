#include "probe/resolver.h"

#include <utility>

#include "probe/check_plan.h"

namespace mailpulse {
namespace {

constexpr int kTryTimeoutMs = 2000;
constexpr int kTries = 2;
constexpr std::uint16_t kDnsPort = 53;

Status ConfigureEvdns(evdns_base* dns, const std::vector<SocketAddress>& nameservers) {
  for (const SocketAddress& ns : nameservers) {
    if (evdns_base_nameserver_sockaddr_add(dns, ns.get(), ns.length, 0) != 0) {
      return Status::Error("cannot use nameserver " + ns.ToString());
    }
  }
  // Without EVDNS_BASE_INITIALIZE_NAMESERVERS evdns reads no hosts file: /etc/hosts (NULL)
  // keeps working as it does with resolv.conf.
  if (!nameservers.empty() && evdns_base_load_hosts(dns, nullptr) != 0) {
    return Status::Error("cannot read /etc/hosts");
  }
  const std::string timeout = std::to_string(kTryTimeoutMs / 1000.0);
  if (evdns_base_set_option(dns, "timeout:", timeout.c_str()) != 0 ||
      evdns_base_set_option(dns, "attempts:", std::to_string(kTries).c_str()) != 0) {
    return Status::Error("cannot set the evdns timeouts");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<SocketAddress> ParseNameserver(std::string_view text) {
  StatusOr<Endpoint> where = ParseCheckTarget(text, kDnsPort);
  if (!where.ok()) return where.status();
  std::optional<SocketAddress> address = ParseLiteralAddress(where->host, where->port);
  if (!address) {
    return Status::Error("'" + OneLine(text) + "' is not an IP address (IP[:PORT])");
  }
  return *address;
}

StatusOr<std::unique_ptr<Resolver>> Resolver::Create(event_base* base,
                                                     const std::vector<std::string>& nameservers) {
  std::vector<SocketAddress> addresses;
  for (const std::string& text : nameservers) {
    StatusOr<SocketAddress> ns = ParseNameserver(text);
    if (!ns.ok()) return Status::Error("nameserver " + ns.status().message());
    addresses.push_back(*ns);
  }
  std::unique_ptr<Resolver> self(new Resolver());
  const int flags = (addresses.empty() ? EVDNS_BASE_INITIALIZE_NAMESERVERS : 0) |
                    EVDNS_BASE_DISABLE_WHEN_INACTIVE;
  self->evdns_.reset(evdns_base_new(base, flags));
  if (!self->evdns_) return Status::Error("cannot set up the DNS resolver (evdns_base_new failed)");
  if (Status s = ConfigureEvdns(self->evdns_.get(), addresses); !s.ok()) return s;
  StatusOr<std::unique_ptr<AresChannel>> ares =
      AresChannel::Create(base, addresses, kTryTimeoutMs, kTries);
  if (!ares.ok()) return ares.status();
  self->ares_ = std::move(*ares);
  return self;
}

Resolver::~Resolver() = default;

}  // namespace mailpulse
