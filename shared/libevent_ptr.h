// Owning handles for libevent objects: unique_ptr aliases with the library's own free functions,
// and the seconds-to-timeval conversion every timer needs. Header-only, included only by glue
// code (the pure libraries never see libevent).
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>

#include <memory>

namespace mailpulse {

template <typename T, void (*Free)(T*)>
struct LibeventDeleter {
  void operator()(T* p) const noexcept {
    if (p != nullptr) Free(p);
  }
};

using EventBasePtr = std::unique_ptr<event_base, LibeventDeleter<event_base, event_base_free>>;
using EventPtr = std::unique_ptr<event, LibeventDeleter<event, event_free>>;
using BufferEventPtr = std::unique_ptr<bufferevent, LibeventDeleter<bufferevent, bufferevent_free>>;
using EvHttpPtr = std::unique_ptr<evhttp, LibeventDeleter<evhttp, evhttp_free>>;
using EvBufferPtr = std::unique_ptr<evbuffer, LibeventDeleter<evbuffer, evbuffer_free>>;

struct EvDnsBaseDeleter {
  // Failing what is still in flight runs every callback, so nothing is left behind.
  void operator()(evdns_base* p) const noexcept { evdns_base_free(p, 1); }
};
using EvDnsBasePtr = std::unique_ptr<evdns_base, EvDnsBaseDeleter>;

// A timer delay; negative delays are now.
inline timeval ToTimeval(double seconds) {
  if (seconds < 0) seconds = 0;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

}  // namespace mailpulse
