// EventSender delivers frames to a probe's shared event socket (unix, TCP, or TCP with TLS for
// a probe on another host) from an event loop. It never blocks anyone: frames wait in a
// bounded queue while the socket is down, the oldest are dropped (and counted) when it is full,
// and the connection is retried with exponential backoff (1 s doubling to 30 s). Every
// connection starts with a PeerHello (its name, and on TLS the shared token). Runs on the
// loop's thread only; milter threads never call it.
#pragma once

#include <event2/event.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include "shared/endpoint.h"
#include "shared/libevent_ptr.h"
#include "shared/metrics.h"

namespace mailpulse {

struct EventSenderOptions {
  std::size_t max_queued = 256;
  std::string hello_name;  // how the probe's log names us (hop or probe name)
  std::string token;       // for a TLS endpoint: the probe's event_token; never logged
  std::shared_ptr<SSL_CTX> tls_context;  // for a TLS endpoint (NewClientTlsContext)
  std::string tls_name;  // SNI and the certificate's name; empty: the endpoint's host
  bool verify = true;    // verify the probe's certificate
};

class EventSender {
 public:
  // `dropped` and `sent` count frames; both must outlive the sender. A TLS endpoint needs
  // options.tls_context.
  EventSender(event_base* base, Endpoint target, EventSenderOptions options, Counter* dropped,
              Counter* sent);
  EventSender(const EventSender&) = delete;
  EventSender& operator=(const EventSender&) = delete;

  // Queues one frame (length prefix included) and sends it as soon as the socket is up.
  void Enqueue(std::string frame);

  bool connected() const { return connected_; }

 private:
  void Connect();
  bufferevent* NewBufferEvent();
  void SendHello();
  void Flush();
  void OnDisconnected(const char* why);
  void ScheduleReconnect();
  static void OnEvent(bufferevent* bev, short what, void* self) noexcept;
  static void OnRead(bufferevent* bev, void* self) noexcept;
  static void OnWrite(bufferevent* bev, void* self) noexcept;
  static void OnReconnectTimer(evutil_socket_t, short, void* self) noexcept;

  event_base* base_;
  Endpoint target_;
  EventSenderOptions options_;
  std::size_t max_queued_;
  Counter* dropped_;
  Counter* sent_;
  std::deque<std::string> queue_;
  BufferEventPtr bev_;
  EventPtr reconnect_timer_;
  bool connected_ = false;
  bool connecting_ = false;
  int backoff_seconds_ = 1;
  bool warned_ = false;
};

}  // namespace mailpulse
