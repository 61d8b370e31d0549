// EventServer owns the shared event socket that milters (and other probes) report to: it
// accepts many peers on a unix socket (mode 0660), on plain TCP (loopback use), or on TCP with
// TLS for peers on other hosts, decodes length-delimited proto::Event frames from each, and
// hands every event to a callback. On a TLS socket a peer's first frame must be a PeerHello
// carrying the shared token (compared in constant time) within 10 seconds; until then nothing
// it sends is believed. A peer that sends garbage, an oversize frame, a wrong or missing hello,
// or fails the TLS handshake is dropped with one log line naming it; the server and the other
// peers go on. Runs on one event loop; not thread-safe.
#pragma once

#include <event2/listener.h>
#include <openssl/ssl.h>

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

// What a TLS event socket needs: its server context and the token every peer must present.
struct EventServerTls {
  std::shared_ptr<SSL_CTX> context;
  std::string token;  // never logged
};

class EventServer {
 public:
  using Handler = std::function<void(const std::string& peer, const proto::Event& event)>;

  // Binds `where`; a unix socket path is replaced if stale and made mode 0660. `where.tls`
  // needs `tls`. Every dropped peer is counted in `dropped_peers` when given (it must outlive
  // the server).
  static StatusOr<std::unique_ptr<EventServer>> Create(event_base* base, const Endpoint& where,
                                                       Handler handler,
                                                       Counter* dropped_peers = nullptr,
                                                       const EventServerTls* tls = nullptr);
  ~EventServer();

  std::size_t peers() const { return peers_.size(); }
  std::uint64_t dropped_peers() const { return dropped_peers_; }

 private:
  struct Peer {
    std::string name;  // "127.0.0.1#3", then "edge@127.0.0.1#3" once it said hello
    BufferEventPtr bev;
    FrameDecoder decoder;
    bool trusted = false;  // on a TLS socket: after a good hello
    EventPtr hello_deadline;
  };
  EventServer(event_base* base, Handler handler, Counter* dropped_peers)
      : base_(base), handler_(std::move(handler)), dropped_counter_(dropped_peers) {}
  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len,
                       void* self) noexcept;
  static void OnRead(bufferevent* bev, void* self) noexcept;
  static void OnEvent(bufferevent* bev, short what, void* self) noexcept;
  static void OnHelloDeadline(evutil_socket_t, short, void* arg) noexcept;
  void Accept(evutil_socket_t fd, const sockaddr* addr);
  void Read(bufferevent* bev);
  // A peer's event: hellos are handled here, everything else goes to the handler once the peer
  // is trusted. False when the peer was dropped.
  bool Dispatch(Peer& peer, const proto::Event& event);
  void Drop(bufferevent* bev, const std::string& why);

  event_base* base_;
  Handler handler_;
  Counter* dropped_counter_;
  std::shared_ptr<SSL_CTX> tls_context_;
  std::string token_;
  std::string unix_path_;
  std::unique_ptr<evconnlistener, void (*)(evconnlistener*)> listener_{nullptr,
                                                                       evconnlistener_free};
  std::map<bufferevent*, std::unique_ptr<Peer>> peers_;
  std::uint64_t next_peer_id_ = 1;
  std::uint64_t dropped_peers_ = 0;
};

}  // namespace mailpulse
