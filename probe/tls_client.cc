#include "probe/tls_client.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <memory>

#include "probe/smtp/smtp_text.h"
#include "shared/net/tls.h"

namespace mailpulse {
namespace {

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

StatusOr<SslPtr> NewClientSsl(SSL_CTX* context, const std::string& tls_name, bool verify) {
  if (context == nullptr) return Status::Error("no TLS context configured");
  SslPtr ssl(SSL_new(context));
  if (!ssl) return Status::Error("SSL_new failed");
  if (Status s = PrepareClientSsl(ssl.get(), tls_name, verify); !s.ok()) return s;
  // Verification runs during the handshake but does not abort it; the verdict
  // (SSL_get_verify_result) is the caller's.
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  return ssl;
}

}  // namespace mailpulse
