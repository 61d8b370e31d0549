// The DNS resolvers of one event loop: an evdns_base for A/AAAA (AddressLookup, the hosts
// file honoured) and a c-ares channel for MX (MxLookup), both reading /etc/resolv.conf by
// default or both using the same explicitly named nameservers, so that a test or an operator
// can point every lookup of the probe at one DNS server. Created once per event loop and
// shared by every check on it. Both resolvers give each try 2 seconds and make 2 tries, in
// place of resolv.conf's `timeout`/`attempts`: a dead nameserver then hands over to the next
// one quickly, and a check's phase deadline, not the resolver's minutes, decides when DNS
// has failed. Glue; not thread-safe: lives on the thread of its event_base.
#pragma once

#include <event2/dns.h>
#include <event2/event.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "probe/address_lookup.h"
#include "probe/mx_lookup.h"
#include "shared/libevent_ptr.h"
#include "shared/status.h"

namespace mailpulse {

// A nameserver as operators write it: "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or
// "[2001:db8::53]:5353" (port 53 by default). Only addresses: a name would need a resolver.
StatusOr<SocketAddress> ParseNameserver(std::string_view text);

class Resolver {
 public:
  // Resolvers on `base` (which must outlive them). `nameservers` empty: /etc/resolv.conf's;
  // else these (ParseNameserver's syntax), in order. Errors name the bad entry.
  static StatusOr<std::unique_ptr<Resolver>> Create(event_base* base,
                                                    const std::vector<std::string>& nameservers);
  // Every lookup made through this resolver must be destroyed first. Queries still in flight
  // are failed and freed.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  evdns_base* evdns() const { return evdns_.get(); }
  AresChannel* ares() const { return ares_.get(); }

 private:
  Resolver() = default;

  EvDnsBasePtr evdns_;
  std::unique_ptr<AresChannel> ares_;
};

}  // namespace mailpulse
