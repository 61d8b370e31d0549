// Owning handles for libevent objects: unique_ptr aliases with the library's own free functions.
// Header-only, included only by glue code (the pure libraries never see libevent).
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
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

}  // namespace mailpulse
