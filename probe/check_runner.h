// CheckRunner: the event-loop glue that carries one SmtpSession over a real connection. It
// resolves the target (TargetLookup: a host's A/AAAA, or a mail domain's MX hosts and theirs;
// a literal address skips DNS), connects without blocking (TCP_NODELAY on every socket; a
// refused address hands over to the next, RFC 5321 section 5.1), speaks TLS through
// bufferevent_openssl (implicit TLS at connect, or a filter over the plain bufferevent when the
// session asks for STARTTLS), verifies the certificate and its name, times every phase on a
// monotonic clock and enforces a per-phase and an overall deadline. It decides the failures that
// happen before the session starts (DNS, refused, connect timeout, implicit TLS) and leaves every
// later verdict to the session. Every socket, bufferevent, SSL and timer is owned by RAII and
// released on every path. Not thread-safe: a runner lives on the thread of its event_base.
#pragma once

#include <event2/event.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probe/address_lookup.h"
#include "probe/smtp/smtp_session.h"
#include "probe/tls_client.h"
#include "shared/status.h"

namespace mailpulse {

class Resolver;

struct CheckOptions {
  std::string host;  // a DNS name or a literal IPv4/IPv6 address (no brackets)
  std::uint16_t port = 25;
  AddressFamily family = AddressFamily::kAny;
  // `host` is a mail domain: connect to its MX hosts in order (RFC 5321 section 5.1), each on
  // `port` (an MX record names no port).
  bool mx_lookup = false;
  // SNI and the name the certificate must carry; empty means `host`, or with mx_lookup the MX
  // host connected to (the name MTA-STS, RFC 8461 section 4.2, checks too). A literal address
  // is checked against the certificate's IP SANs and sends no SNI (RFC 6066 section 3).
  std::string tls_name;
  bool verify_certificate = true;
  double phase_timeout_seconds = 10;    // each phase, DNS and connect included
  double overall_timeout_seconds = 30;  // the whole check
  SessionOptions session;               // kind, TLS mode, HELO name, AUTH, envelope, message
  // An earlier check's session to resume (an abbreviated handshake: no certificate is sent,
  // none decoded or verified); the server may refuse and do a full handshake. Null: full.
  SslSessionRef tls_session;
};

struct CheckResult {
  CheckOutcome outcome;
  std::array<double, kPhaseCount> phase_seconds{};  // indexed by Phase; negative: not reached
  double total_seconds = 0;
  TlsFacts tls;
  std::string address;        // the address connected to ("192.0.2.1:25", "[2001:db8::1]:25")
  std::string mx_host;        // with mx_lookup: the MX host of `address` ("mx1.example.org")
  SslSessionRef tls_session;  // after a TLS session: the one to resume next time, if resumable
};

class CheckRunner {
 public:
  using DoneCallback = std::function<void(CheckResult)>;

  // `base` and `tls_context` must outlive the runner; `resolver` too, and it may be null only
  // when options.host is a literal address. `tls_context` may be null when no TLS is
  // configured.
  CheckRunner(event_base* base, Resolver* resolver, SSL_CTX* tls_context, CheckOptions options,
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
