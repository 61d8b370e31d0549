// CheckRunner: the event-loop glue that carries one SmtpSession over a real connection. It
// resolves the target (evdns, A/AAAA; a literal address skips DNS), connects without blocking
// (TCP_NODELAY on every socket), speaks TLS through bufferevent_openssl (implicit TLS at connect,
// or a filter over the plain bufferevent when the session asks for STARTTLS), verifies the
// certificate and its name, times every phase on a monotonic clock and enforces a per-phase and
// an overall deadline. It decides the failures that happen before the session starts (DNS,
// refused, connect timeout, implicit TLS) and leaves every later verdict to the session.
// Every socket, bufferevent, SSL and timer is owned by RAII and released on every path.
// Not thread-safe: a runner lives on the thread of its event_base.
#pragma once

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probe/smtp/smtp_session.h"
#include "shared/status.h"

namespace mailpulse {

// Owning OpenSSL handles (glue only; the pure libraries never see OpenSSL).
struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); }
};
struct SslDeleter {
  void operator()(SSL* p) const noexcept { SSL_free(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// A client TLS context: verification material from `ca_file` (PEM, may hold several
// certificates), or the system CA store when it is empty; nothing is loaded when `verify` is
// false. One context serves any number of checks; build it once per configuration, because
// loading the system store costs milliseconds.
// Text from a peer (replies, certificate fields) made safe for one report or status line:
// printable ASCII kept, every other byte and those in `also_escape` written as \xNN, cut
// with "..." once `max_length` characters are out.
std::string Printable(std::string_view s, std::size_t max_length = std::string::npos,
                      std::string_view also_escape = {});

StatusOr<SslCtxPtr> NewClientTlsContext(const std::string& ca_file, bool verify);

enum class AddressFamily { kAny, kIpv4, kIpv6 };

struct CheckOptions {
  std::string host;  // a DNS name or a literal IPv4/IPv6 address (no brackets)
  std::uint16_t port = 25;
  AddressFamily family = AddressFamily::kAny;
  // SNI and the name the certificate must carry; empty means `host`. A literal address is
  // checked against the certificate's IP SANs and sends no SNI (RFC 6066 section 3).
  std::string tls_name;
  bool verify_certificate = true;
  double phase_timeout_seconds = 10;    // each phase, DNS and connect included
  double overall_timeout_seconds = 30;  // the whole check
  SessionOptions session;               // kind, TLS mode, HELO name, AUTH, envelope, message
};

struct TlsFacts {
  bool established = false;
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"
  std::string subject;  // RFC 2253: "CN=mx.example.com,O=Example"
  std::string issuer;
  std::vector<std::string> subject_alt_names;  // "DNS:mx.example.com", "IP:192.0.2.1"
  std::int64_t not_after_unix = 0;             // 0 when there is no certificate
  bool verified = false;     // chain and name checked and good (false with verification off)
  std::string verify_error;  // X509_verify_cert_error_string when verification failed
};

struct CheckResult {
  CheckOutcome outcome;
  std::array<double, kPhaseCount> phase_seconds{};  // indexed by Phase; negative: not reached
  double total_seconds = 0;
  TlsFacts tls;
  std::string address;  // the address connected to ("192.0.2.1:25", "[2001:db8::1]:25")
};

class CheckRunner {
 public:
  using DoneCallback = std::function<void(CheckResult)>;

  // `base` and `tls_context` must outlive the runner; `dns` too, and it may be null only when
  // options.host is a literal address. `tls_context` may be null when no TLS is configured.
  CheckRunner(event_base* base, evdns_base* dns, SSL_CTX* tls_context, CheckOptions options,
              DoneCallback done);
  // Destroying a runner before it reports abandons the check: no callback, nothing leaks.
  ~CheckRunner();
  CheckRunner(const CheckRunner&) = delete;
  CheckRunner& operator=(const CheckRunner&) = delete;

  // Starts the check. `done` is called exactly once, from the event loop (never from within
  // Start), with the result; the runner may be destroyed inside `done`.
  void Start();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailpulse
