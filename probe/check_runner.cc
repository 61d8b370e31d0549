#include "probe/check_runner.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <optional>
#include <utility>

#include "probe/address_lookup.h"
#include "probe/resolver.h"
#include "probe/target_lookup.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", s);
  return buf;
}

// A socket until a bufferevent takes it over.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Runs `f` for a libevent or evdns callback: nothing may throw across the C boundary.
template <typename F>
void Guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    MP_LOG_ERROR("check: %s: %s", what, e.what());
  } catch (...) {
    MP_LOG_ERROR("check: %s: unknown exception", what);
  }
}

}  // namespace

class CheckRunner::Impl {
 public:
  Impl(event_base* base, Resolver* resolver, SSL_CTX* tls_context, CheckOptions options,
       DoneCallback done)
      : base_(base),
        resolver_(resolver),
        tls_context_(tls_context),
        options_(std::move(options)),
        done_(std::move(done)),
        session_(options_.session),
        phase_timer_(evtimer_new(base, &Impl::OnPhaseTimer, this)),
        overall_timer_(evtimer_new(base, &Impl::OnOverallTimer, this)),
        done_event_(event_new(base, -1, 0, &Impl::OnDoneEvent, this)) {
    result_.phase_seconds.fill(-1);
    tls_name_ = options_.tls_name.empty() ? options_.host : options_.tls_name;
    target_ = options_.host + ":" + std::to_string(options_.port);
  }
  ~Impl() { Release(); }

  void Start();

 private:
  static void OnConnectWritable(evutil_socket_t fd, short, void* arg) noexcept;
  static void OnRead(bufferevent*, void* arg) noexcept;
  static void OnSocketOutput(evbuffer*, const evbuffer_cb_info* info, void* arg) noexcept;
  static void OnEvent(bufferevent*, short events, void* arg) noexcept;
  static void OnPhaseTimer(evutil_socket_t, short, void* arg) noexcept;
  static void OnOverallTimer(evutil_socket_t, short, void* arg) noexcept;
  static void OnDoneEvent(evutil_socket_t, short, void* arg) noexcept;

  // Runs a step for a C callback; an exception (out of memory) ends the check, never the loop.
  template <typename F>
  void Guard(const char* what, F&& f) noexcept;
  void Resolve();
  void HandleDnsAnswer(StatusOr<std::vector<ConnectCandidate>> answer);
  void CancelDns();
  void Connect();
  void TryNextAddress(int last_error);
  void HandleConnectWritable();
  void HandleTcpConnected(UniqueFd fd);
  StatusOr<SslPtr> NewSsl();
  void AttachBufferEvent(bufferevent* bev);
  void WatchSocketOutput(bufferevent* bev);
  void QuickAck() const;
  void StartSession();
  void HandleReadable();
  void HandleEvent(short events);
  void HandleHandshakeDone();
  void HandleHandshakeFailed(FailureKind kind, const std::string& reason);
  void BeginStartTls();
  void Process(const std::vector<Action>& actions);
  void HandleDeadline(bool overall);
  void StartPhase(Phase phase);
  void EndCurrentPhase(Clock::time_point now);
  void FailBeforeSession(FailureKind kind, Phase phase, std::string detail);
  void Finish();
  void KeepTlsSession();
  void FlushBestEffort();
  void Release();

  event_base* base_;
  Resolver* resolver_;
  SSL_CTX* tls_context_;
  CheckOptions options_;
  DoneCallback done_;
  SmtpSession session_;
  std::string tls_name_;
  std::string target_;  // for log lines

  EventPtr phase_timer_;
  EventPtr overall_timer_;
  EventPtr done_event_;
  EventPtr connect_event_;
  std::unique_ptr<TargetLookup> dns_lookup_;
  std::vector<ConnectCandidate> addresses_;
  std::size_t next_address_ = 0;
  UniqueFd connecting_fd_;
  int socket_fd_ = -1;  // owned by bev_; for socket options only
  BufferEventPtr bev_;
  SSL* ssl_ = nullptr;  // owned by bev_ (BEV_OPT_CLOSE_ON_FREE) once TLS runs
  bool tls_handshaking_ = false;
  bool session_started_ = false;
  bool finished_ = false;

  Clock::time_point check_start_;
  Clock::time_point phase_start_;
  std::optional<Phase> current_phase_;
  CheckOutcome glue_outcome_;  // the verdict when the session never started
  CheckResult result_;
};

template <typename F>
void CheckRunner::Impl::Guard(const char* what, F&& f) noexcept {
  try {
    f();
    return;
  } catch (const std::exception& e) {
    MP_LOG_ERROR("%s: %s: %s", target_.c_str(), what, e.what());
  } catch (...) {
    MP_LOG_ERROR("%s: %s: unknown exception", target_.c_str(), what);
  }
  Guarded("ending the check", [this, what] {
    session_started_ = false;  // the glue's verdict replaces the session's
    FailBeforeSession(FailureKind::kProtocolViolation, current_phase_.value_or(Phase::kConnect),
                      std::string("internal error in ") + what);
  });
}

void CheckRunner::Impl::Start() {
  check_start_ = Clock::now();
  const timeval overall = ToTimeval(options_.overall_timeout_seconds);
  event_add(overall_timer_.get(), &overall);
  std::optional<SocketAddress> literal = ParseLiteralAddress(options_.host, options_.port);
  if (literal && options_.mx_lookup) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns,
                      options_.host + " is an address, not a mail domain");
    return;
  }
  if (literal) {
    if (!FamilyAllowed(options_.family, literal->family())) {
      FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns,
                        options_.host + " is not an address of the requested family");
      return;
    }
    addresses_.push_back({*literal, ""});
    Connect();
    return;
  }
  Resolve();
}

void CheckRunner::Impl::Resolve() {
  StartPhase(Phase::kDns);
  if (resolver_ == nullptr) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns, "no resolver configured");
    return;
  }
  dns_lookup_ = std::make_unique<TargetLookup>(
      resolver_, options_.host, options_.port, options_.family, options_.mx_lookup,
      [this](StatusOr<std::vector<ConnectCandidate>> answer) {
        Guard("dns answer", [&] { HandleDnsAnswer(std::move(answer)); });
      });
  dns_lookup_->Start();
}

void CheckRunner::Impl::HandleDnsAnswer(StatusOr<std::vector<ConnectCandidate>> answer) {
  if (!answer.ok()) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns, answer.status().message());
    return;
  }
  addresses_ = std::move(*answer);
  MP_LOG_DEBUG("%s: resolved to %s (%zu addresses)", target_.c_str(),
               addresses_.front().address.ToString().c_str(), addresses_.size());
  Connect();
}

void CheckRunner::Impl::CancelDns() { dns_lookup_.reset(); }

void CheckRunner::Impl::Connect() {
  StartPhase(Phase::kConnect);
  TryNextAddress(0);
}

// Tries the remaining addresses in order; an address that fails at once (refused, unreachable)
// hands over to the next one within the same connect phase and deadline. With MX lookup the
// addresses of the next MX host follow those of the first (RFC 5321 5.1), and TLS checks the
// name of the MX host being connected to, unless a name was given.
void CheckRunner::Impl::TryNextAddress(int last_error) {
  while (next_address_ < addresses_.size()) {
    const ConnectCandidate& candidate = addresses_[next_address_++];
    const SocketAddress& address = candidate.address;
    result_.address = address.ToString();
    if (options_.mx_lookup) {
      result_.mx_host = candidate.mx_host;
      if (options_.tls_name.empty()) tls_name_ = candidate.mx_host;
    }
    UniqueFd fd(
        ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (fd.get() < 0) {
      last_error = errno;
      continue;
    }
    // Nagle plus the server's delayed ACK would hold our small writes for ~40 ms after TLS.
    const int one = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      MP_LOG_WARNING("%s: TCP_NODELAY: %s", target_.c_str(), ErrnoText(errno).c_str());
    }
    if (::connect(fd.get(), address.get(), address.length) == 0) {
      HandleTcpConnected(std::move(fd));
      return;
    }
    if (errno == EINPROGRESS) {
      connect_event_.reset(event_new(base_, fd.get(), EV_WRITE, &Impl::OnConnectWritable, this));
      event_add(connect_event_.get(), nullptr);
      connecting_fd_ = std::move(fd);
      return;
    }
    last_error = errno;
    MP_LOG_DEBUG("%s: connect to %s: %s", target_.c_str(), result_.address.c_str(),
                 ErrnoText(last_error).c_str());
  }
  FailBeforeSession(
      last_error == ETIMEDOUT ? FailureKind::kConnectTimeout : FailureKind::kConnectionRefused,
      Phase::kConnect, result_.address + ": " + ErrnoText(last_error != 0 ? last_error : EINVAL));
}

void CheckRunner::Impl::OnConnectWritable(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("connect", [self] { self->HandleConnectWritable(); });
}

void CheckRunner::Impl::HandleConnectWritable() {
  int error = 0;
  socklen_t len = sizeof error;
  if (getsockopt(connecting_fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  connect_event_.reset();
  if (error == 0) {
    HandleTcpConnected(std::move(connecting_fd_));
    return;
  }
  connecting_fd_.reset();
  MP_LOG_DEBUG("%s: connect to %s: %s", target_.c_str(), result_.address.c_str(),
               ErrnoText(error).c_str());
  TryNextAddress(error);
}

void CheckRunner::Impl::HandleTcpConnected(UniqueFd fd) {
  MP_LOG_DEBUG("%s: connected to %s", target_.c_str(), result_.address.c_str());
  socket_fd_ = fd.get();
  if (options_.session.tls != TlsMode::kImplicit) {
    bufferevent* bev = bufferevent_socket_new(base_, fd.get(), BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
      FailBeforeSession(FailureKind::kConnectionRefused, Phase::kConnect,
                        "bufferevent_socket_new failed");
      return;
    }
    fd.release();
    AttachBufferEvent(bev);
    WatchSocketOutput(bev);
    StartSession();
    return;
  }
  StartPhase(Phase::kTlsHandshake);
  StatusOr<SslPtr> ssl = NewSsl();
  if (!ssl.ok()) {
    FailBeforeSession(FailureKind::kTlsHandshakeFailed, Phase::kTlsHandshake,
                      ssl.status().message());
    return;
  }
  bufferevent* bev = bufferevent_openssl_socket_new(
      base_, fd.get(), ssl->get(), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    FailBeforeSession(FailureKind::kTlsHandshakeFailed, Phase::kTlsHandshake,
                      "bufferevent_openssl_socket_new failed");
    return;
  }
  fd.release();
  ssl_ = ssl->release();
  tls_handshaking_ = true;
  AttachBufferEvent(bev);
  WatchSocketOutput(bev);
}

StatusOr<SslPtr> CheckRunner::Impl::NewSsl() {
  if (tls_context_ == nullptr) return Status::Error("no TLS context configured");
  SslPtr ssl(SSL_new(tls_context_));
  if (!ssl) return Status::Error("SSL_new failed");
  if (Status st = PrepareClientSsl(ssl.get(), tls_name_, options_.verify_certificate); !st.ok()) {
    return st;
  }
  // Verification runs during the handshake but does not abort it: the handshake completes,
  // the certificate's facts are collected, and the verdict (SSL_get_verify_result) is ours.
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  if (options_.tls_session && SSL_set_session(ssl.get(), options_.tls_session.get()) != 1) {
    ERR_clear_error();  // not resumable with this context: a full handshake it is
  }
  return ssl;
}

void CheckRunner::Impl::AttachBufferEvent(bufferevent* bev) {
  bev_.reset(bev);
  bufferevent_setcb(bev, &Impl::OnRead, nullptr, &Impl::OnEvent, this);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

// TCP_NODELAY covers our side of "Nagle plus delayed ACK". The other side is the server's:
// smtpd (Postfix 3.7 here) writes its TLS 1.3 session tickets and then its next reply as two
// segments without TCP_NODELAY, so Nagle holds the reply until we ACK the tickets, and Linux
// delays that ACK by ~40 ms because we wrote just before (pingpong mode). Measured: every
// reply after a handshake (banner on 465, EHLO after STARTTLS) came 43 ms late. Leaving
// pingpong mode after each of our writes makes the kernel ACK as soon as we read.
void CheckRunner::Impl::QuickAck() const {
  if (socket_fd_ < 0) return;
  const int one = 1;
  (void)setsockopt(socket_fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

// `bev` writes to the socket: a plain one (also under a STARTTLS filter) or an implicit-TLS one.
void CheckRunner::Impl::WatchSocketOutput(bufferevent* bev) {
  evbuffer_add_cb(bufferevent_get_output(bev), &Impl::OnSocketOutput, this);
}

void CheckRunner::Impl::OnSocketOutput(evbuffer*, const evbuffer_cb_info* info,
                                       void* arg) noexcept {
  if (info->n_deleted > 0) static_cast<const Impl*>(arg)->QuickAck();
}

void CheckRunner::Impl::StartSession() {
  session_started_ = true;
  Process(session_.OnConnected());
}

void CheckRunner::Impl::OnRead(bufferevent*, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("read", [self] { self->HandleReadable(); });
}

void CheckRunner::Impl::HandleReadable() {
  bufferevent* const bev = bev_.get();
  evbuffer* in = bufferevent_get_input(bev);
  // Fed in bounded chunks: a server sending an endless line costs at most the parser's limit.
  char chunk[4096];
  while (!finished_ && bev_.get() == bev && evbuffer_get_length(in) > 0) {
    const int n = evbuffer_remove(in, chunk, sizeof chunk);
    if (n <= 0) break;
    if (!session_started_) continue;  // implicit TLS: nothing is read before the handshake
    Process(session_.OnBytes(std::string_view(chunk, static_cast<std::size_t>(n))));
  }
}

void CheckRunner::Impl::OnEvent(bufferevent*, short events, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("connection event", [self, events] { self->HandleEvent(events); });
}

void CheckRunner::Impl::HandleEvent(short events) {
  if (finished_) return;
  if ((events & BEV_EVENT_CONNECTED) != 0) {
    if (tls_handshaking_) HandleHandshakeDone();
    return;
  }
  if ((events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0) return;
  if (tls_handshaking_) {
    HandleHandshakeFailed(FailureKind::kTlsHandshakeFailed,
                          HandshakeFailureReason(bev_.get(), events));
    return;
  }
  if ((events & BEV_EVENT_ERROR) != 0) {
    MP_LOG_DEBUG("%s: connection error: %s", target_.c_str(),
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  }
  // What arrived with the close (a TLS server's last reply and its close_notify in one read)
  // is the session's before the close is.
  if (session_started_ && bev_) HandleReadable();
  if (!finished_ && session_started_) Process(session_.OnPeerClosed());
  if (!finished_) Finish();
}

void CheckRunner::Impl::HandleHandshakeDone() {
  tls_handshaking_ = false;
  QuickAck();  // the handshake's last flight went out without passing our output buffer
  CollectTlsFacts(ssl_, options_.verify_certificate, &result_.tls);
  MP_LOG_DEBUG("%s: %s %s, certificate %s", target_.c_str(), result_.tls.version.c_str(),
               result_.tls.cipher.c_str(), result_.tls.subject.c_str());
  if (options_.verify_certificate && !result_.tls.verified) {
    HandleHandshakeFailed(FailureKind::kCertificateInvalid, result_.tls.verify_error);
    return;
  }
  if (!session_started_) {
    StartSession();  // implicit TLS: the server speaks first, inside TLS
  } else {
    Process(session_.OnTlsEstablished());
  }
}

void CheckRunner::Impl::HandleHandshakeFailed(FailureKind kind, const std::string& reason) {
  tls_handshaking_ = false;
  if (!session_started_) {
    FailBeforeSession(kind, Phase::kTlsHandshake, reason);
  } else {
    Process(session_.OnTlsFailed(kind, reason));
    if (!finished_) Finish();
  }
}

// STARTTLS (RFC 3207): the TLS filter takes over the plain bufferevent, which it frees.
void CheckRunner::Impl::BeginStartTls() {
  StatusOr<SslPtr> ssl = NewSsl();
  bufferevent* filter = nullptr;
  if (ssl.ok()) {
    filter = bufferevent_openssl_filter_new(base_, bev_.get(), ssl->get(),
                                            BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
  }
  if (filter == nullptr) {
    HandleHandshakeFailed(
        FailureKind::kTlsHandshakeFailed,
        ssl.ok() ? "bufferevent_openssl_filter_new failed" : ssl.status().message());
    return;
  }
  ssl_ = ssl->release();
  (void)bev_.release();  // now owned by the filter
  tls_handshaking_ = true;
  AttachBufferEvent(filter);
}

void CheckRunner::Impl::Process(const std::vector<Action>& actions) {
  for (const Action& action : actions) {
    if (finished_) return;
    switch (action.kind) {
      case Action::Kind::kSend:
        if (bev_) bufferevent_write(bev_.get(), action.bytes.data(), action.bytes.size());
        break;
      case Action::Kind::kStartTls:
        BeginStartTls();
        break;
      case Action::Kind::kClose:
        Finish();
        return;
      case Action::Kind::kPhaseStarted:
        StartPhase(action.phase);
        break;
    }
  }
}

void CheckRunner::Impl::OnPhaseTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("phase timeout", [self] { self->HandleDeadline(false); });
}

void CheckRunner::Impl::OnOverallTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->Guard("overall timeout", [self] { self->HandleDeadline(true); });
}

void CheckRunner::Impl::HandleDeadline(bool overall) {
  if (finished_) return;
  const std::string limit =
      overall ? "the overall timeout of " + FormatSeconds(options_.overall_timeout_seconds)
              : FormatSeconds(options_.phase_timeout_seconds);
  MP_LOG_DEBUG("%s: %s timeout", target_.c_str(), overall ? "overall" : "phase");
  if (session_started_) {  // the session names the phase (banner, uncertain after data...)
    Process(session_.OnTimeout());
    if (!finished_) Finish();
    return;
  }
  const Phase phase = current_phase_.value_or(Phase::kConnect);
  switch (phase) {
    case Phase::kDns: {
      const std::string waiting = dns_lookup_ ? dns_lookup_->WaitingFor() : "";
      CancelDns();
      FailBeforeSession(FailureKind::kDnsFailure, phase,
                        options_.host + ": no answer within " + limit +
                            (waiting.empty() ? "" : " (waiting for " + waiting + ")"));
      break;
    }
    case Phase::kTlsHandshake:
      FailBeforeSession(FailureKind::kTimeout, phase, "no TLS handshake within " + limit);
      break;
    default:
      FailBeforeSession(FailureKind::kConnectTimeout, Phase::kConnect,
                        result_.address + ": no connection within " + limit);
      break;
  }
}

void CheckRunner::Impl::StartPhase(Phase phase) {
  const Clock::time_point now = Clock::now();
  EndCurrentPhase(now);
  current_phase_ = phase;
  phase_start_ = now;
  const timeval tv = ToTimeval(options_.phase_timeout_seconds);
  event_add(phase_timer_.get(), &tv);
}

void CheckRunner::Impl::EndCurrentPhase(Clock::time_point now) {
  if (!current_phase_) return;
  double& slot = result_.phase_seconds[static_cast<std::size_t>(*current_phase_)];
  if (slot < 0) slot = 0;
  slot += Seconds(now - phase_start_);  // a repeated phase (EHLO after STARTTLS) adds up
  current_phase_.reset();
}

void CheckRunner::Impl::FailBeforeSession(FailureKind kind, Phase phase, std::string detail) {
  glue_outcome_.success = false;
  glue_outcome_.failure = kind;
  glue_outcome_.phase = phase;
  glue_outcome_.detail = std::move(detail);
  Finish();
}

void CheckRunner::Impl::Finish() {
  if (finished_) return;
  finished_ = true;
  const Clock::time_point now = Clock::now();
  EndCurrentPhase(now);
  result_.total_seconds = Seconds(now - check_start_);
  result_.outcome = session_started_ ? session_.outcome() : glue_outcome_;
  KeepTlsSession();
  FlushBestEffort();
  Release();
  // Reported from a fresh loop iteration, so the owner may destroy the runner in the callback.
  event_active(done_event_.get(), 0, 0);
}

// TLS 1.3 tickets come after the handshake (RFC 8446 section 4.6.1); by the end of the check
// they have been read with the server's replies, so the session now is the resumable one.
void CheckRunner::Impl::KeepTlsSession() {
  if (ssl_ == nullptr || tls_handshaking_ || !result_.tls.established) return;
  SSL_SESSION* live = SSL_get0_session(ssl_);
  if (live == nullptr || SSL_SESSION_is_resumable(live) != 1) return;
  // A copy: freeing an SSL that sent no close_notify (we hang up after QUIT) marks its
  // session not resumable (ssl_clear_bad_session), which would spoil a shared one.
  result_.tls_session = AdoptSession(SSL_SESSION_dup(live));
}

// A failing session ends with QUIT and close in one breath. The check is decided, so it does
// not wait: what fits into the socket now goes out (the server then logs a QUIT rather than a
// lost connection), the rest is dropped with the connection.
void CheckRunner::Impl::FlushBestEffort() {
  if (!bev_ || tls_handshaking_) return;
  evbuffer* out = bufferevent_get_output(bev_.get());
  if (ssl_ != nullptr && evbuffer_get_length(out) > 0) {
    const auto len = evbuffer_get_length(out);
    if (SSL_write(ssl_, evbuffer_pullup(out, -1), static_cast<int>(len)) <= 0) {
      ERR_clear_error();
      return;
    }
  }
  // Implicit TLS: the SSL writes straight to the socket. STARTTLS: the filter has put its
  // records into the plain bufferevent below it, which has not written them yet.
  bufferevent* plain = ssl_ != nullptr ? bufferevent_get_underlying(bev_.get()) : bev_.get();
  if (plain == nullptr) return;
  out = bufferevent_get_output(plain);
  const evutil_socket_t fd = bufferevent_getfd(plain);
  if (fd < 0 || evbuffer_get_length(out) == 0) return;
  evbuffer_unfreeze(out, 1);  // a socket bufferevent freezes its output's start for itself
  (void)evbuffer_write(out, fd);
}

void CheckRunner::Impl::Release() {
  CancelDns();
  if (phase_timer_) event_del(phase_timer_.get());
  if (overall_timer_) event_del(overall_timer_.get());
  connect_event_.reset();
  connecting_fd_.reset();
  bev_.reset();  // frees the TLS filter, the SSL and the socket with it
  ssl_ = nullptr;
  socket_fd_ = -1;
  tls_handshaking_ = false;
}

void CheckRunner::Impl::OnDoneEvent(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  DoneCallback done = std::move(self->done_);
  CheckResult result = std::move(self->result_);
  if (done) Guarded("done callback", [&] { done(std::move(result)); });
  // `self` may be gone here.
}

CheckRunner::CheckRunner(event_base* base, Resolver* resolver, SSL_CTX* tls_context,
                         CheckOptions options, DoneCallback done)
    : impl_(std::make_unique<Impl>(base, resolver, tls_context, std::move(options),
                                   std::move(done))) {}

CheckRunner::~CheckRunner() = default;

void CheckRunner::Start() { impl_->Start(); }

}  // namespace mailpulse
