// SessionAccounting follows one MTA connection through the milter stages (connect, helo, mail,
// rcpt, header, body, end of message, abort, close) and turns it into traffic counts. It mirrors
// the libmilter callbacks but never sees libmilter: the glue passes the macro values it read.
//
// What is counted, and when (see docs/metrics.md for the operator's view):
// - a connection at close, by the direction it ended with (outbound once it authenticated);
// - a message, its accepted recipients and its bytes at end of message;
// - an abort when a transaction with an accepted recipient ends without end of message
//   (client QUIT, RSET or drop after RCPT or mid-DATA);
// - a reject for each recipient Postfix rejected itself (SMFIP_RCPT_REJ: {rcpt_mailer}=error,
//   {rcpt_host}=enhanced code, {rcpt_addr}=reply text). With smtpd_delay_reject=yes, client,
//   HELO and sender rejects arrive this way too; the stage comes from Postfix's reply text.
//
// Not thread-safe: one instance per MTA connection (libmilter gives each its own thread).
// TrafficCounters and ClientClassifier must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "milter/core/client_classifier.h"
#include "milter/core/traffic_counters.h"

namespace mailpulse {

// Stage of a reject from Postfix's reply text ("Client host rejected", "Helo command rejected",
// "Sender address rejected", "Data command rejected", ...); anything else is a recipient reject.
RejectStage ClassifyRejectStage(std::string_view reply_text);

// The enhanced status code (RFC 3463 "class.subject.detail") if `text` is one, else "unknown".
std::string_view NormalizeEnhancedStatus(std::string_view text);

struct RejectInfo {
  RejectStage stage;
  std::string_view status;  // normalized enhanced code
};

struct MessageSummary {
  Direction direction = Direction::kInbound;
  std::uint64_t recipients = 0;
  std::uint64_t rejected_recipients = 0;
  std::uint64_t bytes = 0;
  bool tls = false;
  bool authenticated = false;
};

class SessionAccounting {
 public:
  SessionAccounting(TrafficCounters* counters, const ClientClassifier* classifier);
  ~SessionAccounting();
  SessionAccounting(const SessionAccounting&) = delete;
  SessionAccounting& operator=(const SessionAccounting&) = delete;

  void OnConnect(const ClientEndpoint& client);
  // tls_version: the {tls_version} macro, empty when the session is not encrypted.
  void OnHelo(std::string_view tls_version);
  // auth_authen: {auth_authen}, the SASL login, empty when not authenticated.
  void OnMail(std::string_view auth_authen, std::string_view tls_version);
  // The three rcpt macros. Returns what was rejected, if the MTA rejected this recipient.
  std::optional<RejectInfo> OnRcpt(std::string_view rcpt_mailer, std::string_view rcpt_host,
                                   std::string_view rcpt_addr);
  void OnHeader(std::string_view name, std::string_view value);
  void OnBody(std::size_t length);
  // The message is complete; counts it and returns what was counted (for the log line).
  MessageSummary OnEndOfMessage();
  void OnAbort();
  // The MTA closed the connection. Idempotent; the destructor calls it too, so a connection is
  // counted exactly once even if the glue never saw close.
  void OnClose();

  Direction direction() const;
  const std::string& client_address() const { return client_address_; }

 private:
  void ResetMessage();

  TrafficCounters* counters_;
  const ClientClassifier* classifier_;
  Direction connect_direction_ = Direction::kInbound;
  std::string client_address_;
  bool connected_ = false;
  bool closed_ = false;
  bool tls_ = false;
  bool authenticated_ = false;

  // The transaction in progress.
  bool in_transaction_ = false;
  bool saw_headers_ = false;
  std::uint64_t recipients_ = 0;
  std::uint64_t rejected_recipients_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace mailpulse
