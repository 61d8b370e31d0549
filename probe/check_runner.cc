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

timeval ToTimeval(double seconds) {
  if (seconds < 0) seconds = 0;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

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

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  std::string ToString() const {
    char text[INET6_ADDRSTRLEN] = "?";
    std::uint16_t port = 0;
    if (family() == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
      evutil_inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      port = ntohs(in->sin_port);
      return std::string(text) + ":" + std::to_string(port);
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    evutil_inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(text) + "]:" + std::to_string(port);
  }
};

// A literal IPv4 or IPv6 address (no brackets), or nullopt for a name.
std::optional<SocketAddress> ParseLiteral(const std::string& host, std::uint16_t port) {
  SocketAddress a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (evutil_inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
    return a;
  }
  if (evutil_inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

bool FamilyAllowed(AddressFamily want, int family) {
  return want == AddressFamily::kAny || (want == AddressFamily::kIpv4 && family == AF_INET) ||
         (want == AddressFamily::kIpv6 && family == AF_INET6);
}

struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* n) const noexcept { GENERAL_NAMES_free(n); }
};
struct AddrInfoDeleter {
  void operator()(evutil_addrinfo* a) const noexcept { evutil_freeaddrinfo(a); }
};

}  // namespace

std::string Printable(std::string_view s, std::size_t max_length, std::string_view also_escape) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_length) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && also_escape.find(static_cast<char>(c)) == std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

namespace {

std::string NameText(const X509_NAME* name) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? Printable(std::string_view(data, static_cast<std::size_t>(n))) : "";
}

std::vector<std::string> SubjectAltNames(X509* cert) {
  std::vector<std::string> out;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type == GEN_DNS || n->type == GEN_EMAIL) {
      const ASN1_STRING* s = n->type == GEN_DNS ? n->d.dNSName : n->d.rfc822Name;
      const std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<std::size_t>(ASN1_STRING_length(s)));
      out.push_back((n->type == GEN_DNS ? "DNS:" : "email:") + Printable(text));
    } else if (n->type == GEN_IPADD) {
      const int len = ASN1_STRING_length(n->d.iPAddress);
      char text[INET6_ADDRSTRLEN] = "";
      if ((len == 4 || len == 16) &&
          evutil_inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(n->d.iPAddress),
                           text, sizeof text)) {
        out.push_back(std::string("IP:") + text);
      }
    }
  }
  return out;
}

void CollectTlsFacts(SSL* ssl, bool verify, TlsFacts* facts) {
  facts->established = true;
  facts->version = SSL_get_version(ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl)) facts->cipher = SSL_CIPHER_get_name(c);
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert != nullptr) {
    facts->subject = NameText(X509_get_subject_name(cert));
    facts->issuer = NameText(X509_get_issuer_name(cert));
    facts->subject_alt_names = SubjectAltNames(cert);
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) facts->not_after_unix = timegm(&tm);
  }
  if (!verify) return;
  const long result = SSL_get_verify_result(ssl);
  if (cert == nullptr) {
    facts->verify_error = "no certificate presented";
  } else if (result != X509_V_OK) {
    facts->verify_error = X509_verify_cert_error_string(result);
  } else {
    facts->verified = true;
  }
}

// An OpenSSL error queue entry as its reason alone ("wrong version number").
std::string OpenSslErrorText(unsigned long e) {
  if (ERR_SYSTEM_ERROR(e)) return ErrnoText(ERR_GET_REASON(e));
  if (const char* reason = ERR_reason_error_string(e)) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// OpenSSL's reasons for a failed handshake, oldest first ("wrong version number",
// "sslv3 alert handshake failure"), or what the socket said.
std::string HandshakeFailureReason(bufferevent* bev, short events) {
  std::string reason;
  while (const unsigned long e = bufferevent_get_openssl_error(bev)) {
    // libevent also files SSL_get_error() codes here (1 for SSL_ERROR_SSL): no reason text.
    if (ERR_GET_LIB(e) == 0) continue;
    const std::string text = OpenSslErrorText(e);
    if (reason.find(text) == std::string::npos) reason += (reason.empty() ? "" : "; ") + text;
  }
  if (!reason.empty()) return reason;
  if ((events & BEV_EVENT_ERROR) != 0 && EVUTIL_SOCKET_ERROR() != 0) {
    return evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
  }
  return "connection closed during the TLS handshake";
}

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

StatusOr<SslCtxPtr> NewClientTlsContext(const std::string& ca_file, bool verify) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Status::Error("SSL_CTX_new failed");
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  if (!verify) return ctx;
  const int ok = ca_file.empty()
                     ? SSL_CTX_set_default_verify_paths(ctx.get())
                     : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
  if (ok != 1) {
    const unsigned long e = ERR_get_error();  // the first error is the root cause
    const std::string reason = e != 0 ? OpenSslErrorText(e) : "unknown error";
    ERR_clear_error();
    return Status::Error(ca_file.empty() ? "system CA store: " + reason
                                         : "CA file " + ca_file + ": " + reason);
  }
  return ctx;
}

class CheckRunner::Impl {
 public:
  Impl(event_base* base, evdns_base* dns, SSL_CTX* tls_context, CheckOptions options,
       DoneCallback done)
      : base_(base),
        dns_(dns),
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
  // The evdns callback's argument: handed to evdns in Resolve and reclaimed by OnDnsAnswer,
  // which evdns calls exactly once (also after a cancel, later, from the loop). `owner` is
  // cleared when the runner cancels, so a late answer finds nobody to tell.
  struct DnsLookup {
    Impl* owner = nullptr;
    evdns_getaddrinfo_request* request = nullptr;
  };

  static void OnDnsAnswer(int error, evutil_addrinfo* answers, void* arg) noexcept;
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
  void HandleDnsAnswer(int error, evutil_addrinfo* answers);
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
  void FlushBestEffort();
  void Release();

  event_base* base_;
  evdns_base* dns_;
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
  DnsLookup* dns_lookup_ = nullptr;  // not owned; see DnsLookup
  std::vector<SocketAddress> addresses_;
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
  if (std::optional<SocketAddress> literal = ParseLiteral(options_.host, options_.port)) {
    if (!FamilyAllowed(options_.family, literal->family())) {
      FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns,
                        options_.host + " is not an address of the requested family");
      return;
    }
    addresses_.push_back(*literal);
    Connect();
    return;
  }
  Resolve();
}

void CheckRunner::Impl::Resolve() {
  StartPhase(Phase::kDns);
  if (dns_ == nullptr) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns, "no resolver configured");
    return;
  }
  evutil_addrinfo hints{};
  hints.ai_family = options_.family == AddressFamily::kIpv4   ? AF_INET
                    : options_.family == AddressFamily::kIpv6 ? AF_INET6
                                                              : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  auto lookup = std::make_unique<DnsLookup>();
  lookup->owner = this;
  dns_lookup_ = lookup.get();
  // Hand-off: OnDnsAnswer reclaims the lookup. It may run before evdns_getaddrinfo returns
  // (hosts file, immediate errors); then dns_lookup_ is already null here.
  evdns_getaddrinfo_request* request =
      evdns_getaddrinfo(dns_, options_.host.c_str(), std::to_string(options_.port).c_str(), &hints,
                        &Impl::OnDnsAnswer, lookup.release());
  if (dns_lookup_ != nullptr) dns_lookup_->request = request;
}

void CheckRunner::Impl::OnDnsAnswer(int error, evutil_addrinfo* answers, void* arg) noexcept {
  std::unique_ptr<DnsLookup> lookup(static_cast<DnsLookup*>(arg));
  std::unique_ptr<evutil_addrinfo, AddrInfoDeleter> owned(answers);
  if (lookup->owner == nullptr) return;  // cancelled: the runner moved on or is gone
  Impl* self = lookup->owner;
  self->dns_lookup_ = nullptr;
  self->Guard("dns answer", [&] { self->HandleDnsAnswer(error, answers); });
}

void CheckRunner::Impl::HandleDnsAnswer(int error, evutil_addrinfo* answers) {
  if (error != 0) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns,
                      options_.host + ": " + evutil_gai_strerror(error));
    return;
  }
  for (const evutil_addrinfo* a = answers; a != nullptr; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage) || !FamilyAllowed(options_.family, a->ai_family)) {
      continue;
    }
    SocketAddress sa;
    std::memcpy(&sa.storage, a->ai_addr, a->ai_addrlen);
    sa.length = static_cast<socklen_t>(a->ai_addrlen);
    addresses_.push_back(sa);
  }
  if (addresses_.empty()) {
    FailBeforeSession(FailureKind::kDnsFailure, Phase::kDns,
                      options_.host + ": no address of the requested family");
    return;
  }
  MP_LOG_DEBUG("%s: resolved to %s (%zu addresses)", target_.c_str(),
               addresses_.front().ToString().c_str(), addresses_.size());
  Connect();
}

void CheckRunner::Impl::CancelDns() {
  if (dns_lookup_ == nullptr) return;
  DnsLookup* lookup = std::exchange(dns_lookup_, nullptr);
  lookup->owner = nullptr;
  if (lookup->request != nullptr) evdns_getaddrinfo_cancel(lookup->request);
}

void CheckRunner::Impl::Connect() {
  StartPhase(Phase::kConnect);
  TryNextAddress(0);
}

// Tries the remaining addresses in order; an address that fails at once (refused, unreachable)
// hands over to the next one within the same connect phase and deadline.
void CheckRunner::Impl::TryNextAddress(int last_error) {
  while (next_address_ < addresses_.size()) {
    const SocketAddress& address = addresses_[next_address_++];
    result_.address = address.ToString();
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
  const bool literal = ParseLiteral(tls_name_, 0).has_value();
  // SSL_set_tlsext_host_name, spelt out: the macro's C cast trips -Wold-style-cast.
  if (!literal && SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                           const_cast<char*>(tls_name_.c_str())) != 1) {
    return Status::Error("cannot use '" + tls_name_ + "' as TLS server name");
  }
  if (options_.verify_certificate) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, tls_name_.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, tls_name_.c_str(), 0);
    if (ok != 1) return Status::Error("cannot verify the name '" + tls_name_ + "'");
  }
  // Verification runs during the handshake but does not abort it: the handshake completes,
  // the certificate's facts are collected, and the verdict (SSL_get_verify_result) is ours.
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
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
  if (session_started_) Process(session_.OnPeerClosed());
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
    case Phase::kDns:
      CancelDns();
      FailBeforeSession(FailureKind::kDnsFailure, phase,
                        options_.host + ": no answer within " + limit);
      break;
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
  FlushBestEffort();
  Release();
  // Reported from a fresh loop iteration, so the owner may destroy the runner in the callback.
  event_active(done_event_.get(), 0, 0);
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

CheckRunner::CheckRunner(event_base* base, evdns_base* dns, SSL_CTX* tls_context,
                         CheckOptions options, DoneCallback done)
    : impl_(std::make_unique<Impl>(base, dns, tls_context, std::move(options), std::move(done))) {}

CheckRunner::~CheckRunner() = default;

void CheckRunner::Start() { impl_->Start(); }

}  // namespace mailpulse
