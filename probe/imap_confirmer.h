// ImapConfirmer: the event-loop glue that carries one ImapSession over a real connection, to
// confirm that a probe message reached a mailbox without our milter (a hosted mailbox): log
// in, find the message by its probe id, read its hop trail, delete it. It resolves the host
// (AddressLookup; a literal address skips DNS), connects without blocking (TCP_NODELAY; a
// refused address hands over to the next), speaks TLS through a bufferevent_openssl filter —
// at connect for implicit TLS (port 993), or when the session asks for STARTTLS — verifies the
// certificate and its name as CheckRunner does (system store or CA file through the SSL_CTX,
// or off), times every phase on a monotonic clock and enforces a per-phase and an overall
// deadline. It decides the failures before the session starts (DNS, refused, connect timeout,
// implicit TLS) and leaves every later verdict to the session. The password goes to the
// session only; nothing here logs what is sent. Every socket, bufferevent, SSL and timer is
// owned by RAII and released on every path. Not thread-safe: a confirmer lives on the thread
// of its event_base.
#pragma once

#include <event2/event.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "probe/address_lookup.h"
#include "probe/imap/imap_session.h"
#include "probe/tls_client.h"

namespace mailpulse {

class Resolver;

struct ImapOptions {
  std::string host;  // a DNS name or a literal IPv4/IPv6 address (no brackets)
  std::uint16_t port = 993;
  AddressFamily family = AddressFamily::kAny;
  ImapTlsMode tls = ImapTlsMode::kImplicit;
  // SNI and the name the certificate must carry; empty means `host`. A literal address is
  // checked against the certificate's IP SANs and sends no SNI (RFC 6066 section 3).
  std::string tls_name;
  bool verify_certificate = true;  // the CA material is the SSL_CTX's (NewClientTlsContext)
  ImapAuthMethod auth = ImapAuthMethod::kAuto;
  std::string user;
  std::string password;  // never logged, never in a result
  std::string mailbox = "INBOX";
  std::string probe_id;                 // 32 hex digits
  bool keep = false;                    // report only; leave the message in the mailbox
  double phase_timeout_seconds = 10;    // each phase, DNS and connect included
  double overall_timeout_seconds = 30;  // the whole confirmation
};

struct ImapResult {
  ImapOutcome outcome;  // found or not, the messages and their hop trail, or the failure
  std::array<double, kImapPhaseCount> phase_seconds{};  // indexed by ImapPhase; <0: not reached
  double total_seconds = 0;
  TlsFacts tls;
  std::string address;  // the address connected to ("192.0.2.1:993")
};

class ImapConfirmer {
 public:
  using Done = std::function<void(ImapResult)>;

  // `base` and `tls_context` must outlive the confirmer, and so must `resolver`, which may be
  // null when options.host is a literal address. Every IMAP connection is TLS, so
  // `tls_context` is needed (null fails the confirmation in its TLS phase).
  ImapConfirmer(event_base* base, Resolver* resolver, SSL_CTX* tls_context, ImapOptions options,
                Done done);
  // Destroying a confirmer before it reports abandons the confirmation: no callback, nothing
  // leaks, the connection is closed.
  ~ImapConfirmer();
  ImapConfirmer(const ImapConfirmer&) = delete;
  ImapConfirmer& operator=(const ImapConfirmer&) = delete;

  // Starts the confirmation. `done` is called exactly once, from the event loop (never from
  // within Start), with the result; the confirmer may be destroyed inside `done`.
  void Start();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailpulse
