// The OpenSSL side of a check: client contexts, the facts of an established session
// (version, cipher, certificate subject, issuer, SANs, not-after, verification), and OpenSSL's
// own reason for a failed handshake. Glue only: the pure libraries never see OpenSSL. The
// functions are thread-safe; an SSL_CTX may be shared by any number of checks on one thread.
#pragma once

#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

// Owning OpenSSL handles.
struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); }
};
struct SslDeleter {
  void operator()(SSL* p) const noexcept { SSL_free(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
// A TLS session to resume (RFC 8446 section 2.2), shared: a result may be copied around.
using SslSessionRef = std::shared_ptr<SSL_SESSION>;
SslSessionRef AdoptSession(SSL_SESSION* session);  // takes the reference SSL_get1_session gave

// A client TLS context: verification material from `ca_file` (PEM, may hold several
// certificates), or the system CA store when it is empty; nothing is loaded when `verify` is
// false (and no chain is built then: a callback accepts whatever the server sends). One
// context serves any number of checks; build it once per configuration, because loading the
// system store costs milliseconds.
StatusOr<SslCtxPtr> NewClientTlsContext(const std::string& ca_file, bool verify);

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

// OpenSSL's reasons for a failed handshake on `bev`, oldest first ("wrong version number",
// "sslv3 alert handshake failure"), or what the socket said (`events` from the callback).
std::string HandshakeFailureReason(bufferevent* bev, short events);

}  // namespace mailpulse
