// The facts of a check's established TLS session: version, cipher, certificate subject,
// issuer, SANs, not-after, verification, resumption. Client contexts, handles and OpenSSL's
// reasons for a failed handshake are in shared/net/tls.h. Glue only: the pure libraries never
// see OpenSSL. Thread-safe.
#pragma once

#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared/net/tls.h"
#include "shared/status.h"

namespace mailpulse {

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
  // An abbreviated handshake that resumed an earlier session: the certificate facts and the
  // verification verdict are those of the full handshake that made the session.
  bool resumed = false;
};

// A client SSL for one connection on `context`: SNI `tls_name` (none for a literal address,
// RFC 6066 section 3) and, with `verify`, the name or IP address the certificate must carry.
// Verification runs during the handshake without aborting it (SSL_VERIFY_NONE): the caller
// reads the verdict with CollectTlsFacts once the handshake is done.
StatusOr<SslPtr> NewClientSsl(SSL_CTX* context, const std::string& tls_name, bool verify);

// The facts of `ssl` after its handshake; with `verify`, the verdict of the verification that
// ran during it (SSL_get_verify_result: chain and the name set on the SSL).
void CollectTlsFacts(SSL* ssl, bool verify, TlsFacts* facts);

}  // namespace mailpulse
