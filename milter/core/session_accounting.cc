#include "milter/core/session_accounting.h"

#include <array>
#include <cctype>
#include <utility>

namespace mailpulse {

namespace {

bool ContainsNoCase(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    std::size_t j = 0;
    while (j < needle.size() && std::tolower(static_cast<unsigned char>(haystack[i + j])) ==
                                    std::tolower(static_cast<unsigned char>(needle[j]))) {
      ++j;
    }
    if (j == needle.size()) return true;
  }
  return false;
}

bool IsDigits(std::string_view s, std::size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

RejectStage ClassifyRejectStage(std::string_view reply_text) {
  // Postfix words every restriction reply as "<what>: <class> rejected: <why>" with the class
  // naming what it checked (smtpd_check.c); RBL and unknown-client replies name the client.
  static constexpr std::array<std::pair<std::string_view, RejectStage>, 7> kMarkers = {{
      {"Client host rejected", RejectStage::kConnect},
      {"Client host [", RejectStage::kConnect},  // reject_rbl_client: "Client host [ip] blocked"
      {"Helo command rejected", RejectStage::kHelo},
      {"Sender address rejected", RejectStage::kMail},
      {"Data command rejected", RejectStage::kData},
      {"End-of-data rejected", RejectStage::kEom},
      {"Recipient address rejected", RejectStage::kRcpt},
  }};
  for (const auto& [marker, stage] : kMarkers) {
    if (ContainsNoCase(reply_text, marker)) return stage;
  }
  return RejectStage::kRcpt;
}

std::string_view NormalizeEnhancedStatus(std::string_view text) {
  // RFC 3463 section 2: class "." subject "." detail; class is 2, 4 or 5, subject up to 3
  // digits, detail up to 3 digits.
  const std::size_t first = text.find('.');
  const std::size_t second =
      first == std::string_view::npos ? std::string_view::npos : text.find('.', first + 1);
  if (second == std::string_view::npos) return "unknown";
  const std::string_view cls = text.substr(0, first);
  const std::string_view subject = text.substr(first + 1, second - first - 1);
  const std::string_view detail = text.substr(second + 1);
  if (cls.size() != 1 || (cls[0] != '2' && cls[0] != '4' && cls[0] != '5')) return "unknown";
  if (!IsDigits(subject, 3) || !IsDigits(detail, 3)) return "unknown";
  return text;
}

SessionAccounting::SessionAccounting(TrafficCounters* counters, const ClientClassifier* classifier)
    : counters_(counters), classifier_(classifier) {}

SessionAccounting::~SessionAccounting() { OnClose(); }

void SessionAccounting::OnConnect(const ClientEndpoint& client) {
  connected_ = true;
  connect_direction_ = classifier_->Classify(client);
  client_address_ = client.address ? client.address->ToString() : std::string("unknown");
}

void SessionAccounting::OnHelo(std::string_view tls_version) {
  if (!tls_version.empty()) tls_ = true;
}

void SessionAccounting::OnMail(std::string_view auth_authen, std::string_view tls_version) {
  // Postfix sends no abort between messages on one connection: a new MAIL starts afresh.
  if (in_transaction_) OnAbort();
  ResetMessage();
  in_transaction_ = true;
  if (!auth_authen.empty()) authenticated_ = true;
  if (!tls_version.empty()) tls_ = true;
}

std::optional<RejectInfo> SessionAccounting::OnRcpt(std::string_view rcpt_mailer,
                                                    std::string_view rcpt_host,
                                                    std::string_view rcpt_addr) {
  in_transaction_ = true;
  if (rcpt_mailer != "error") {
    ++recipients_;
    return std::nullopt;
  }
  ++rejected_recipients_;
  RejectInfo info{ClassifyRejectStage(rcpt_addr), NormalizeEnhancedStatus(rcpt_host)};
  counters_->AddReject(direction(), info.stage, info.status);
  return info;
}

void SessionAccounting::OnHeader(std::string_view name, std::string_view value) {
  // "Name: value\r\n" as it stands in the message (Postfix strips the space after the colon).
  bytes_ += name.size() + 2 + value.size() + 2;
  saw_headers_ = true;
}

void SessionAccounting::OnBody(std::size_t length) { bytes_ += length; }

MessageSummary SessionAccounting::OnEndOfMessage() {
  MessageSummary s;
  s.direction = direction();
  s.recipients = recipients_;
  s.rejected_recipients = rejected_recipients_;
  s.bytes = bytes_ + (saw_headers_ ? 2 : 0);  // the empty line that ends the header
  s.tls = tls_;
  s.authenticated = authenticated_;
  counters_->AddMessage(s.direction, s.recipients, s.bytes);
  ResetMessage();
  return s;
}

void SessionAccounting::OnAbort() {
  if (in_transaction_ && recipients_ > 0) counters_->AddAbort(direction());
  ResetMessage();
}

void SessionAccounting::OnClose() {
  if (closed_) return;
  closed_ = true;
  if (in_transaction_) OnAbort();
  if (connected_) counters_->AddConnection(direction(), tls_);
}

Direction SessionAccounting::direction() const {
  if (connect_direction_ == Direction::kLocal) return Direction::kLocal;
  if (authenticated_) return Direction::kOutbound;
  return connect_direction_;
}

void SessionAccounting::ResetMessage() {
  in_transaction_ = false;
  saw_headers_ = false;
  recipients_ = 0;
  rejected_recipients_ = 0;
  bytes_ = 0;
}

}  // namespace mailpulse
