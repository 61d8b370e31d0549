#include "probe/tls_client.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <memory>

#include "probe/address_lookup.h"
#include "probe/smtp/smtp_text.h"

namespace mailpulse {
namespace {

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* n) const noexcept { GENERAL_NAMES_free(n); }
};

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

// An OpenSSL error queue entry as its reason alone ("wrong version number").
std::string OpenSslErrorText(unsigned long e) {
  if (ERR_SYSTEM_ERROR(e)) return ErrnoText(ERR_GET_REASON(e));
  if (const char* reason = ERR_reason_error_string(e)) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

void CollectTlsFacts(SSL* ssl, bool verify, TlsFacts* facts) {
  facts->established = true;
  facts->resumed = SSL_session_reused(ssl) == 1;
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

SslSessionRef AdoptSession(SSL_SESSION* session) {
  return SslSessionRef(session, [](SSL_SESSION* s) { SSL_SESSION_free(s); });
}

StatusOr<SslCtxPtr> NewClientTlsContext(const std::string& ca_file, bool verify) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Status::Error("SSL_CTX_new failed");
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  if (!verify) {
    // With SSL_VERIFY_NONE OpenSSL would still build and check the chain and throw the
    // verdict away; skipping it saves about 2% of a check's CPU (measured, probe_compare).
    SSL_CTX_set_cert_verify_callback(
        ctx.get(), [](X509_STORE_CTX*, void*) noexcept { return 1; }, nullptr);
    return ctx;
  }
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

StatusOr<SslPtr> NewClientSsl(SSL_CTX* context, const std::string& tls_name, bool verify) {
  if (context == nullptr) return Status::Error("no TLS context configured");
  SslPtr ssl(SSL_new(context));
  if (!ssl) return Status::Error("SSL_new failed");
  const bool literal = ParseLiteralAddress(tls_name, 0).has_value();
  // SSL_set_tlsext_host_name, spelt out: the macro's C cast trips -Wold-style-cast.
  if (!literal && SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                           const_cast<char*>(tls_name.c_str())) != 1) {
    return Status::Error("cannot use '" + tls_name + "' as TLS server name");
  }
  if (verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, tls_name.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, tls_name.c_str(), 0);
    if (ok != 1) return Status::Error("cannot verify the name '" + tls_name + "'");
  }
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  return ssl;
}

}  // namespace mailpulse
