// OpenSSL for the glue of both programs: owning handles, client and server contexts, a
// client SSL's server name and name verification, and OpenSSL's own reasons for a failed
// handshake. The pure libraries never see OpenSSL. The functions are thread-safe; an SSL_CTX
// may be shared by any number of connections on one thread.
#pragma once

#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

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

// Makes a server context from a PEM certificate chain and its key (TLS 1.2 at least); errors
// name the file and OpenSSL's reason.
StatusOr<SslCtxPtr> NewServerTlsContext(const std::string& cert_file, const std::string& key_file);

// Sets the SNI (RFC 6066 section 3: not for a literal address) and, with `verify`, the name or
// IP address the server's certificate must carry (no partial wildcards).
Status PrepareClientSsl(SSL* ssl, const std::string& name, bool verify);

// An OpenSSL error queue entry as its reason alone ("wrong version number").
std::string OpenSslErrorText(unsigned long e);

// OpenSSL's reasons for a failed handshake on `bev`, oldest first ("wrong version number",
// "sslv3 alert handshake failure"), or what the socket said (`events` from the callback).
std::string HandshakeFailureReason(bufferevent* bev, short events);

}  // namespace mailpulse
