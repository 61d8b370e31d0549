// ImapConfirmer: connect, TLS and timing glue for ImapSession (see imap_confirmer.h). The
// socket is a bufferevent from the start (bufferevent_socket_connect on our own non-blocking
// socket, so TCP_NODELAY is set before the SYN); TLS of either kind is an OpenSSL filter over
// it, so implicit TLS and STARTTLS share one path.
#include "probe/imap_confirmer.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "probe/resolver.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", s);
  return buf;
}

}  // namespace

class ImapConfirmer::Impl {
 public:
  Impl(event_base* base, Resolver* resolver, SSL_CTX* tls_context, ImapOptions options, Done done)
      : base_(base),
        resolver_(resolver),
        tls_context_(tls_context),
        options_(std::move(options)),
        done_(std::move(done)),
        session_(SessionOptions(options_)),
        phase_timer_(evtimer_new(base, &Impl::OnPhaseTimer, this)),
        overall_timer_(evtimer_new(base, &Impl::OnOverallTimer, this)),
        done_event_(event_new(base, -1, 0, &Impl::OnDoneEvent, this)) {
    result_.phase_seconds.fill(-1);
    tls_name_ = options_.tls_name.empty() ? options_.host : options_.tls_name;
    target_ = "imap " + options_.host + ":" + std::to_string(options_.port);
  }
  ~Impl() { Release(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void Start();

 private:
  static ImapSessionOptions SessionOptions(const ImapOptions& o) {
    ImapSessionOptions s;
    s.tls = o.tls;
    s.auth = o.auth;
    s.user = o.user;
    s.password = o.password;
    s.mailbox = o.mailbox;
    s.probe_id = o.probe_id;
    s.keep = o.keep;
    return s;
  }
  static void OnRead(bufferevent*, void* arg) noexcept;
  static void OnEvent(bufferevent*, short events, void* arg) noexcept;
  static void OnPhaseTimer(evutil_socket_t, short, void* arg) noexcept;
  static void OnOverallTimer(evutil_socket_t, short, void* arg) noexcept;
  static void OnDoneEvent(evutil_socket_t, short, void* arg) noexcept;

  // Runs a step for a C callback; an exception (out of memory) ends the confirmation, never
  // the loop.
  template <typename F>
  void Guard(const char* what, F&& f) noexcept;
  void HandleDnsAnswer(StatusOr<std::vector<SocketAddress>> answer);
  void TryNextAddress(int last_error);
  void HandleEvent(short events);
  void HandleTcpConnected();
  void StartTls();
  void HandleHandshakeDone();
  void HandleHandshakeFailed(ImapFailure kind, const std::string& reason);
  void HandleReadable();
  void Process(const std::vector<ImapAction>& actions);
  void HandleDeadline(bool overall);
  void StartPhase(ImapPhase phase);
  void EndCurrentPhase(Clock::time_point now);
  void FailBeforeSession(ImapFailure kind, ImapPhase phase, std::string detail);
  void Finish();
  void Release();

  event_base* base_;
  Resolver* resolver_;
  SSL_CTX* tls_context_;
  ImapOptions options_;
  Done done_;
  ImapSession session_;
  std::string tls_name_;
  std::string target_;  // for log lines

  EventPtr phase_timer_;
  EventPtr overall_timer_;
  EventPtr done_event_;
  std::unique_ptr<AddressLookup> dns_lookup_;
  std::vector<SocketAddress> addresses_;
  std::size_t next_address_ = 0;
  BufferEventPtr bev_;
  SSL* ssl_ = nullptr;  // owned by bev_ (the TLS filter) once TLS runs
  bool connecting_ = false;
  bool tls_handshaking_ = false;
  bool session_started_ = false;
  bool finished_ = false;

  Clock::time_point start_;
  Clock::time_point phase_start_;
  std::optional<ImapPhase> current_phase_;
  ImapOutcome glue_outcome_;  // the verdict when the session never started
  ImapResult result_;
};

template <typename F>
void ImapConfirmer::Impl::Guard(const char* what, F&& f) noexcept {
  try {
    f();
    return;
  } catch (const std::exception& e) {
    MP_LOG_ERROR("%s: %s: %s", target_.c_str(), what, e.what());
  } catch (...) {
    MP_LOG_ERROR("%s: %s: unknown exception", target_.c_str(), what);
  }
  try {
    session_started_ = false;  // the glue's verdict replaces the session's
    FailBeforeSession(ImapFailure::kProtocolViolation, current_phase_.value_or(ImapPhase::kConnect),
                      std::string("internal error in ") + what);
  } catch (...) {
    MP_LOG_ERROR("%s: cannot end the confirmation after an internal error", target_.c_str());
  }
}

void ImapConfirmer::Impl::Start() {
  start_ = Clock::now();
  const timeval overall = ToTimeval(options_.overall_timeout_seconds);
  event_add(overall_timer_.get(), &overall);
  if (Status s = ImapSession::CheckOptions(SessionOptions(options_)); !s.ok()) {
    FailBeforeSession(ImapFailure::kInvalidOptions, ImapPhase::kConnect, s.message());
    return;
  }
  if (std::optional<SocketAddress> literal = ParseLiteralAddress(options_.host, options_.port)) {
    if (!FamilyAllowed(options_.family, literal->family())) {
      FailBeforeSession(ImapFailure::kDnsFailure, ImapPhase::kDns,
                        options_.host + " is not an address of the requested family");
      return;
    }
    addresses_.push_back(*literal);
    StartPhase(ImapPhase::kConnect);
    TryNextAddress(0);
    return;
  }
  StartPhase(ImapPhase::kDns);
  if (resolver_ == nullptr) {
    FailBeforeSession(ImapFailure::kDnsFailure, ImapPhase::kDns, "no resolver configured");
    return;
  }
  dns_lookup_ = std::make_unique<AddressLookup>(
      resolver_->evdns(), options_.host, options_.port, options_.family,
      [this](StatusOr<std::vector<SocketAddress>> answer) {
        Guard("dns answer", [&] { HandleDnsAnswer(std::move(answer)); });
      });
  dns_lookup_->Start();
}

void ImapConfirmer::Impl::HandleDnsAnswer(StatusOr<std::vector<SocketAddress>> answer) {
  if (!answer.ok()) {
    FailBeforeSession(ImapFailure::kDnsFailure, ImapPhase::kDns, answer.status().message());
    return;
  }
  addresses_ = std::move(*answer);
  StartPhase(ImapPhase::kConnect);
  TryNextAddress(0);
}

// The addresses in order; one that fails (refused, unreachable) hands over to the next within
// the same connect phase and deadline. The connect is ours, so an immediate error is known
// at once; one that takes time libevent reports with errno set (SO_ERROR).
void ImapConfirmer::Impl::TryNextAddress(int last_error) {
  bev_.reset();
  while (next_address_ < addresses_.size()) {
    const SocketAddress& address = addresses_[next_address_++];
    result_.address = address.ToString();
    const int fd =
        ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    // Nagle plus the server's delayed ACK would hold our small commands for ~40 ms.
    const int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      MP_LOG_WARNING("%s: TCP_NODELAY: %s", target_.c_str(), ErrnoText(errno).c_str());
    }
    const bool connected = ::connect(fd, address.get(), address.length) == 0;
    if (!connected && errno != EINPROGRESS) {
      last_error = errno;
      ::close(fd);
      MP_LOG_DEBUG("%s: connect to %s: %s", target_.c_str(), result_.address.c_str(),
                   ErrnoText(last_error).c_str());
      continue;
    }
    bev_.reset(bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE));
    if (!bev_) {
      ::close(fd);
      last_error = ENOMEM;
      continue;
    }
    bufferevent_setcb(bev_.get(), &Impl::OnRead, nullptr, &Impl::OnEvent, this);
    if (connected) return HandleTcpConnected();
    connecting_ = true;
    (void)bufferevent_socket_connect(bev_.get(), nullptr, 0);  // waits for the one in flight
    return;
  }
  FailBeforeSession(
      last_error == ETIMEDOUT ? ImapFailure::kConnectTimeout : ImapFailure::kConnectionRefused,
      ImapPhase::kConnect,
      result_.address + ": " + ErrnoText(last_error != 0 ? last_error : EINVAL));
}

void ImapConfirmer::Impl::OnEvent(bufferevent*, short events, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("connection event", [self, events] { self->HandleEvent(events); });
}

void ImapConfirmer::Impl::HandleEvent(short events) {
  if (finished_) return;
  if (connecting_) {
    connecting_ = false;
    if ((events & BEV_EVENT_CONNECTED) != 0) return HandleTcpConnected();
    const int error = EVUTIL_SOCKET_ERROR();
    MP_LOG_DEBUG("%s: connect to %s: %s", target_.c_str(), result_.address.c_str(),
                 ErrnoText(error).c_str());
    return TryNextAddress(error);
  }
  if ((events & BEV_EVENT_CONNECTED) != 0) {
    if (tls_handshaking_) HandleHandshakeDone();
    return;
  }
  if ((events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0) return;
  if (tls_handshaking_) {
    return HandleHandshakeFailed(ImapFailure::kTlsHandshakeFailed,
                                 HandshakeFailureReason(bev_.get(), events));
  }
  // What arrived with the close (the LOGOUT reply and a close_notify in one read) is the
  // session's before the close is.
  if (session_started_ && bev_) HandleReadable();
  if (!finished_ && session_started_) Process(session_.OnPeerClosed());
  if (!finished_) Finish();
}

void ImapConfirmer::Impl::HandleTcpConnected() {
  MP_LOG_DEBUG("%s: connected to %s", target_.c_str(), result_.address.c_str());
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  if (options_.tls == ImapTlsMode::kImplicit) {
    StartPhase(ImapPhase::kTlsHandshake);
    return StartTls();
  }
  session_started_ = true;
  Process(session_.OnConnected());
}

// The TLS filter takes over the plain bufferevent, which it frees with itself.
void ImapConfirmer::Impl::StartTls() {
  StatusOr<SslPtr> ssl = NewClientSsl(tls_context_, tls_name_, options_.verify_certificate);
  bufferevent* filter = nullptr;
  if (ssl.ok()) {
    filter = bufferevent_openssl_filter_new(base_, bev_.get(), ssl->get(),
                                            BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
  }
  if (filter == nullptr) {
    return HandleHandshakeFailed(
        ImapFailure::kTlsHandshakeFailed,
        ssl.ok() ? "bufferevent_openssl_filter_new failed" : ssl.status().message());
  }
  ssl_ = ssl->release();
  (void)bev_.release();  // now owned by the filter
  bev_.reset(filter);
  tls_handshaking_ = true;
  bufferevent_setcb(filter, &Impl::OnRead, nullptr, &Impl::OnEvent, this);
  bufferevent_enable(filter, EV_READ | EV_WRITE);
}

void ImapConfirmer::Impl::HandleHandshakeDone() {
  tls_handshaking_ = false;
  CollectTlsFacts(ssl_, options_.verify_certificate, &result_.tls);
  MP_LOG_DEBUG("%s: %s %s, certificate %s", target_.c_str(), result_.tls.version.c_str(),
               result_.tls.cipher.c_str(), result_.tls.subject.c_str());
  if (options_.verify_certificate && !result_.tls.verified) {
    return HandleHandshakeFailed(ImapFailure::kCertificateInvalid, result_.tls.verify_error);
  }
  if (session_started_) return Process(session_.OnTlsEstablished());
  session_started_ = true;  // implicit TLS: the server greets inside TLS
  Process(session_.OnConnected());
}

void ImapConfirmer::Impl::HandleHandshakeFailed(ImapFailure kind, const std::string& reason) {
  tls_handshaking_ = false;
  if (!session_started_) return FailBeforeSession(kind, ImapPhase::kTlsHandshake, reason);
  Process(session_.OnTlsFailed(kind, reason));
  if (!finished_) Finish();
}

void ImapConfirmer::Impl::OnRead(bufferevent*, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("read", [self] { self->HandleReadable(); });
}

void ImapConfirmer::Impl::HandleReadable() {
  bufferevent* const bev = bev_.get();
  evbuffer* in = bufferevent_get_input(bev);
  // Fed in bounded chunks: a server sending endless data costs at most the parser's limits.
  char chunk[4096];
  while (!finished_ && bev_.get() == bev && evbuffer_get_length(in) > 0) {
    const int n = evbuffer_remove(in, chunk, sizeof chunk);
    if (n <= 0) break;
    if (!session_started_) continue;
    Process(session_.OnBytes(std::string_view(chunk, static_cast<std::size_t>(n))));
  }
}

void ImapConfirmer::Impl::Process(const std::vector<ImapAction>& actions) {
  for (const ImapAction& action : actions) {
    if (finished_) return;
    switch (action.kind) {
      case ImapAction::Kind::kSend:
        if (bev_) bufferevent_write(bev_.get(), action.bytes.data(), action.bytes.size());
        break;
      case ImapAction::Kind::kStartTls:
        StartTls();
        break;
      case ImapAction::Kind::kClose:
        Finish();
        return;
      case ImapAction::Kind::kPhaseStarted:
        StartPhase(action.phase);
        break;
    }
  }
}

void ImapConfirmer::Impl::OnPhaseTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("phase timeout", [self] { self->HandleDeadline(false); });
}

void ImapConfirmer::Impl::OnOverallTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("overall timeout", [self] { self->HandleDeadline(true); });
}

void ImapConfirmer::Impl::HandleDeadline(bool overall) {
  if (finished_) return;
  const std::string limit =
      overall ? "the overall timeout of " + FormatSeconds(options_.overall_timeout_seconds)
              : FormatSeconds(options_.phase_timeout_seconds);
  MP_LOG_DEBUG("%s: %s timeout", target_.c_str(), overall ? "overall" : "phase");
  if (session_started_) {  // the session names what it waited for
    Process(session_.OnTimeout());
    if (!finished_) Finish();
    return;
  }
  const ImapPhase phase = current_phase_.value_or(ImapPhase::kConnect);
  if (phase == ImapPhase::kDns) {
    dns_lookup_.reset();
    FailBeforeSession(ImapFailure::kDnsFailure, phase,
                      options_.host + ": no answer within " + limit);
  } else if (phase == ImapPhase::kTlsHandshake) {
    FailBeforeSession(ImapFailure::kTimeout, phase, "no TLS handshake within " + limit);
  } else {
    FailBeforeSession(ImapFailure::kConnectTimeout, ImapPhase::kConnect,
                      result_.address + ": no connection within " + limit);
  }
}

void ImapConfirmer::Impl::StartPhase(ImapPhase phase) {
  const Clock::time_point now = Clock::now();
  EndCurrentPhase(now);
  current_phase_ = phase;
  phase_start_ = now;
  const timeval tv = ToTimeval(options_.phase_timeout_seconds);
  event_add(phase_timer_.get(), &tv);
}

void ImapConfirmer::Impl::EndCurrentPhase(Clock::time_point now) {
  if (!current_phase_) return;
  double& slot = result_.phase_seconds[static_cast<std::size_t>(*current_phase_)];
  if (slot < 0) slot = 0;
  slot += Seconds(now - phase_start_);  // a repeated phase (CAPABILITY after TLS) adds up
  current_phase_.reset();
}

void ImapConfirmer::Impl::FailBeforeSession(ImapFailure kind, ImapPhase phase, std::string detail) {
  glue_outcome_.success = false;
  glue_outcome_.failure = kind;
  glue_outcome_.phase = phase;
  glue_outcome_.detail = std::move(detail);
  Finish();
}

void ImapConfirmer::Impl::Finish() {
  if (finished_) return;
  finished_ = true;
  const Clock::time_point now = Clock::now();
  EndCurrentPhase(now);
  result_.total_seconds = Seconds(now - start_);
  result_.outcome = session_started_ ? session_.outcome() : glue_outcome_;
  const ImapOutcome& o = result_.outcome;
  MP_LOG_DEBUG("%s: %s at %s, %zu message(s) confirmed, %zu deleted", target_.c_str(),
               o.success ? (o.found() ? "found" : "not found") : ImapFailureName(o.failure).data(),
               ImapPhaseName(o.phase).data(), o.messages.size(), o.deleted);
  Release();
  // Reported from a fresh loop iteration, so the owner may destroy the confirmer in `done`.
  event_active(done_event_.get(), 0, 0);
}

void ImapConfirmer::Impl::Release() {
  dns_lookup_.reset();
  if (phase_timer_) event_del(phase_timer_.get());
  if (overall_timer_) event_del(overall_timer_.get());
  bev_.reset();  // frees the TLS filter, the SSL and the socket with it
  ssl_ = nullptr;
  connecting_ = false;
  tls_handshaking_ = false;
}

void ImapConfirmer::Impl::OnDoneEvent(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  Done done = std::move(self->done_);
  ImapResult result = std::move(self->result_);
  if (!done) return;
  try {
    done(std::move(result));  // `self` may be gone afterwards
  } catch (const std::exception& e) {
    MP_LOG_ERROR("imap: done callback: %s", e.what());
  } catch (...) {
    MP_LOG_ERROR("imap: done callback: unknown exception");
  }
}

ImapConfirmer::ImapConfirmer(event_base* base, Resolver* resolver, SSL_CTX* tls_context,
                             ImapOptions options, Done done)
    : impl_(std::make_unique<Impl>(base, resolver, tls_context, std::move(options),
                                   std::move(done))) {}

ImapConfirmer::~ImapConfirmer() = default;

void ImapConfirmer::Start() { impl_->Start(); }

}  // namespace mailpulse
