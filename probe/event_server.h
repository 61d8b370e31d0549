// EventServer owns the shared event socket that milters report to: it accepts many peers on a
// unix socket (mode 0660) or TCP, decodes length-delimited proto::Event frames from each, and
// hands every event to a callback. A peer that sends garbage or an oversize frame is dropped
// with one log line naming it; the server and the other peers go on. Runs on one event loop.
#pragma once

#include <event2/listener.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "shared/endpoint.h"
#include "shared/frame_codec.h"
#include "shared/libevent_ptr.h"
#include "shared/metrics.h"
#include "shared/proto/event.pb.h"
#include "shared/status.h"

namespace mailpulse {

class EventServer {
 public:
  using Handler = std::function<void(const std::string& peer, const proto::Event& event)>;

  // Binds `where`; a unix socket path is replaced if stale and made mode 0660. Every dropped
  // peer is counted in `dropped_peers` when given (it must outlive the server).
  static StatusOr<std::unique_ptr<EventServer>> Create(event_base* base, const Endpoint& where,
                                                       Handler handler,
                                                       Counter* dropped_peers = nullptr);
  ~EventServer();

  std::size_t peers() const { return peers_.size(); }
  std::uint64_t dropped_peers() const { return dropped_peers_; }

 private:
  struct Peer {
    std::string name;
    BufferEventPtr bev;
    FrameDecoder decoder;
  };
  EventServer(event_base* base, Handler handler, Counter* dropped_peers)
      : base_(base), handler_(std::move(handler)), dropped_counter_(dropped_peers) {}
  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len,
                       void* self) noexcept;
  static void OnRead(bufferevent* bev, void* self) noexcept;
  static void OnEvent(bufferevent* bev, short what, void* self) noexcept;
  void Drop(bufferevent* bev, const std::string& why);

  event_base* base_;
  Handler handler_;
  Counter* dropped_counter_;
  std::string unix_path_;
  std::unique_ptr<evconnlistener, void (*)(evconnlistener*)> listener_{nullptr,
                                                                       evconnlistener_free};
  std::map<bufferevent*, std::unique_ptr<Peer>> peers_;
  std::uint64_t next_peer_id_ = 1;
  std::uint64_t dropped_peers_ = 0;
};

}  // namespace mailpulse
