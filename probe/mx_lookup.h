// The MX query of a check, through c-ares driven by a libevent loop (libevent's evdns has no
// MX query). AresChannel is one c-ares channel per event loop: c-ares tells it which sockets
// to watch (ARES_OPT_SOCK_STATE_CB), it watches them with libevent events and keeps one timer
// at c-ares's next timeout, and hands every wake-up to ares_process_fd. MxLookup is one
// query: its answer goes through MxHostsToTry (probe/mx_hosts.h) and comes back as the MX
// hosts in the order to try. Like AddressLookup it cancels on destruction: c-ares cannot
// cancel a single query, so the query runs on, and its answer finds nobody to tell and is
// freed. Glue; not thread-safe: both live on the thread of their event_base.
#pragma once

#include <ares.h>
#include <event2/event.h>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "probe/address_lookup.h"
#include "probe/mx_hosts.h"
#include "shared/libevent_ptr.h"
#include "shared/status.h"

namespace mailpulse {

class AresChannel {
 public:
  // A channel on `base` (which must outlive it). `nameservers` empty: those of
  // /etc/resolv.conf; else exactly these (address and port; UDP, and TCP for truncated
  // answers). Each try waits `try_timeout_ms`, `tries` rounds over the nameservers.
  static StatusOr<std::unique_ptr<AresChannel>> Create(
      event_base* base, const std::vector<SocketAddress>& nameservers, int try_timeout_ms,
      int tries);
  // Ends every query still in flight (their lookups, if any still exist, are told "resolver
  // shut down"). Must not run from within a lookup's callback.
  ~AresChannel();
  AresChannel(const AresChannel&) = delete;
  AresChannel& operator=(const AresChannel&) = delete;

  ares_channel get() const { return channel_; }
  // Uniform in [0, n): the order of MX hosts of equal preference (RFC 5321 5.1).
  std::size_t RandomBelow(std::size_t n);
  // Sets the timer to c-ares's next timeout; called after anything that may start a query.
  void RearmTimer();

 private:
  explicit AresChannel(event_base* base);
  static void OnSocketState(void* data, ares_socket_t fd, int readable, int writable) noexcept;
  static void OnSocketReady(evutil_socket_t fd, short what, void* arg) noexcept;
  static void OnTimer(evutil_socket_t, short, void* arg) noexcept;
  void WatchSocket(ares_socket_t fd, bool readable, bool writable);

  event_base* base_;
  ares_channel channel_ = nullptr;
  EventPtr timer_;
  std::map<ares_socket_t, EventPtr> sockets_;  // what c-ares asked us to watch
  std::mt19937 random_;
};

class MxLookup {
 public:
  // The MX hosts to try, or why there are none (MxHostsToTry's texts, or c-ares's:
  // "example.org: Timeout while contacting DNS servers").
  using Done = std::function<void(StatusOr<MxHosts>)>;

  // `channel` must outlive the lookup.
  MxLookup(AresChannel* channel, std::string domain, Done done);
  // Cancels a lookup still in flight: `done` will not run.
  ~MxLookup();
  MxLookup(const MxLookup&) = delete;
  MxLookup& operator=(const MxLookup&) = delete;

  // Starts the query. `done` runs once, from the event loop or, when c-ares fails at once,
  // from within Start; the lookup may be destroyed in `done`.
  void Start();

 private:
  // The c-ares callback's argument: handed over in Start, reclaimed by OnAnswer, which c-ares
  // calls exactly once per query (ARES_EDESTRUCTION when the channel goes first). `owner` is
  // cleared when the lookup is destroyed.
  struct Pending {
    MxLookup* owner = nullptr;
  };
  static void OnAnswer(void* arg, int status, int timeouts, unsigned char* answer,
                       int length) noexcept;
  void Finish(int status, const unsigned char* answer, int length);

  AresChannel* channel_;
  std::string domain_;
  Done done_;
  Pending* pending_ = nullptr;  // not owned; see Pending
};

}  // namespace mailpulse
