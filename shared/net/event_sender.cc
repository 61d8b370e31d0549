#include "shared/net/event_sender.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shared/frame_codec.h"
#include "shared/logging.h"
#include "shared/net/tls.h"

namespace mailpulse {
namespace {

constexpr int kMaxBackoffSeconds = 30;
// Bytes allowed to sit in the socket's output buffer; beyond it the peer is not reading and
// frames stay in (and overflow from) the bounded queue instead.
constexpr std::size_t kMaxUnsentBytes = 1 << 20;

}  // namespace

EventSender::EventSender(event_base* base, Endpoint target, EventSenderOptions options,
                         Counter* dropped, Counter* sent)
    : base_(base),
      target_(std::move(target)),
      options_(std::move(options)),
      max_queued_(std::max<std::size_t>(options_.max_queued, 1)),
      dropped_(dropped),
      sent_(sent),
      reconnect_timer_(evtimer_new(base, &EventSender::OnReconnectTimer, this)) {}

void EventSender::Enqueue(std::string frame) {
  if (queue_.size() >= max_queued_) {
    queue_.pop_front();
    dropped_->Inc();
  }
  queue_.push_back(std::move(frame));
  if (connected_) {
    Flush();
  } else if (!connecting_ && !evtimer_pending(reconnect_timer_.get(), nullptr)) {
    Connect();
  }
}

bufferevent* EventSender::NewBufferEvent() {
  if (!target_.tls) return bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!options_.tls_context) return nullptr;
  SslPtr ssl(SSL_new(options_.tls_context.get()));
  if (!ssl) return nullptr;
  const std::string name = options_.tls_name.empty() ? target_.host : options_.tls_name;
  if (Status s = PrepareClientSsl(ssl.get(), name, options_.verify); !s.ok()) {
    MP_LOG_WARNING("event socket %s: %s", target_.ToString().c_str(), s.message().c_str());
    return nullptr;
  }
  SSL_set_verify(ssl.get(), options_.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  bufferevent* bev = bufferevent_openssl_socket_new(
      base_, -1, ssl.get(), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
  if (bev != nullptr) (void)ssl.release();  // owned by the bufferevent now
  return bev;
}

void EventSender::Connect() {
  bev_.reset(NewBufferEvent());
  if (!bev_) {
    ScheduleReconnect();
    return;
  }
  bufferevent_setcb(bev_.get(), &EventSender::OnRead, &EventSender::OnWrite, &EventSender::OnEvent,
                    this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  connecting_ = true;
  int rc;
  if (target_.kind == Endpoint::Kind::kUnix) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, target_.path.c_str(), sizeof sun.sun_path - 1);
    rc = bufferevent_socket_connect(bev_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  } else {
    rc = bufferevent_socket_connect_hostname(bev_.get(), nullptr, AF_UNSPEC, target_.host.c_str(),
                                             target_.port);
  }
  if (rc != 0) OnDisconnected(std::strerror(errno));
}

// The hello goes out first on every connection, ahead of the queued frames; it is not one of
// the counted events.
void EventSender::SendHello() {
  if (options_.hello_name.empty() && options_.token.empty()) return;
  proto::Event hello;
  hello.mutable_peer_hello()->set_peer_name(options_.hello_name);
  hello.mutable_peer_hello()->set_token(options_.token);
  std::string frame;
  AppendEventFrame(hello, &frame);
  bufferevent_write(bev_.get(), frame.data(), frame.size());
}

void EventSender::Flush() {
  evbuffer* out = bufferevent_get_output(bev_.get());
  while (!queue_.empty() && evbuffer_get_length(out) < kMaxUnsentBytes) {
    const std::string& frame = queue_.front();
    if (evbuffer_add(out, frame.data(), frame.size()) != 0) break;
    sent_->Inc();
    queue_.pop_front();
  }
}

void EventSender::OnDisconnected(const char* why) {
  if (!warned_) {
    MP_LOG_WARNING("event socket %s: %s; holding up to %zu events and retrying",
                   target_.ToString().c_str(), why, max_queued_);
    warned_ = true;
  }
  connected_ = false;
  connecting_ = false;
  bev_.reset();
  ScheduleReconnect();
}

void EventSender::ScheduleReconnect() {
  timeval tv{backoff_seconds_, 0};
  evtimer_add(reconnect_timer_.get(), &tv);
  backoff_seconds_ = std::min(backoff_seconds_ * 2, kMaxBackoffSeconds);
}

void EventSender::OnEvent(bufferevent* bev, short what, void* self) noexcept {
  auto* sender = static_cast<EventSender*>(self);
  if ((what & BEV_EVENT_CONNECTED) != 0) {
    sender->connected_ = true;
    sender->connecting_ = false;
    sender->backoff_seconds_ = 1;
    if (sender->warned_) {
      MP_LOG_INFO("event socket %s: connected", sender->target_.ToString().c_str());
    }
    sender->warned_ = false;
    sender->SendHello();
    sender->Flush();
    return;
  }
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) {
    const int err = EVUTIL_SOCKET_ERROR();
    const std::string why = (what & BEV_EVENT_EOF) != 0 ? "closed by peer"
                            : sender->target_.tls ? "TLS: " + HandshakeFailureReason(bev, what)
                                                  : evutil_socket_error_to_string(err);
    ERR_clear_error();
    sender->OnDisconnected(why.c_str());
  }
}

void EventSender::OnRead(bufferevent* bev, void* /*self*/) noexcept {
  // The probe sends nothing on this socket today; discard whatever arrives.
  evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

void EventSender::OnWrite(bufferevent* /*bev*/, void* self) noexcept {
  auto* sender = static_cast<EventSender*>(self);
  if (sender->connected_) sender->Flush();
}

void EventSender::OnReconnectTimer(evutil_socket_t, short, void* self) noexcept {
  auto* sender = static_cast<EventSender*>(self);
  if (!sender->connected_ && !sender->connecting_) sender->Connect();
}

}  // namespace mailpulse
