#include "milter/core/probe_inspector.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "milter/core/dsn_parser.h"

namespace mailpulse {
namespace {

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

// "<Probe-Sink@Example.org>" -> "probe-sink@example.org".
std::string NormalizeAddress(std::string_view address) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  std::string out(address);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

void ProbeInspector::OnConnect(std::int64_t now_unix_us, std::string_view client_address) {
  connect_us_ = now_unix_us;
  client_address_ = std::string(client_address);
}

void ProbeInspector::OnMail(std::int64_t now_unix_us) {
  ResetMessage();
  mail_us_ = now_unix_us;
}

void ProbeInspector::OnRcpt(std::string_view address) {
  if (recipients_.size() < 1000) recipients_.push_back(NormalizeAddress(address));
}

void ProbeInspector::OnHeader(std::string_view name, std::string_view value) {
  if (policy_->key == nullptr) return;
  if (SameName(name, kProbeTokenHeader)) {
    if (tokens_.size() < 8) tokens_.emplace_back(value);
    return;
  }
  if (SameName(name, "Content-Type") && dsn_boundary_.empty() && ToReturnPath()) {
    if (std::optional<std::string> boundary = DsnBoundary(value)) dsn_boundary_ = *boundary;
  }
}

void ProbeInspector::OnBody(std::string_view chunk) {
  if (!WantsBody()) return;
  body_.append(chunk.substr(0, kMaxDsnBodyBytes - body_.size()));
}

ProbeVerdict ProbeInspector::OnEndOfMessage(std::int64_t now_unix_us, std::string_view queue_id) {
  ProbeVerdict v;
  if (policy_->key != nullptr) {
    if (!tokens_.empty()) InspectToken(now_unix_us, queue_id, &v);
    if (!dsn_boundary_.empty()) InspectDsn(now_unix_us, queue_id, &v);
  }
  ResetMessage();
  return v;
}

void ProbeInspector::InspectToken(std::int64_t now_unix_us, std::string_view queue_id,
                                  ProbeVerdict* v) {
  TokenCheck check;
  if (tokens_.size() > 1) {
    check.problem = TokenProblem::kMalformed;  // one message, one token: more is a forgery
  } else {
    check = VerifyProbeToken(*policy_->key, tokens_.front(), now_unix_us, policy_->limits,
                             policy_->replay, policy_->hop);
  }
  if (check.problem != TokenProblem::kNone) {
    v->invalid = check.problem;
    if (policy_->strip_invalid) {
      // Deleting from the last occurrence keeps the earlier indexes valid.
      for (int i = static_cast<int>(tokens_.size()); i >= 1; --i) {
        v->edits.push_back({HeaderEdit::Kind::kDelete, std::string(kProbeTokenHeader), "", i});
      }
    }
    return;
  }
  proto::HopSighting s;
  s.set_probe_id(check.token.id);
  s.set_probe_source(check.token.source);
  s.set_probe_time_unix_us(check.token.time_unix_us);
  s.set_hop(policy_->hop);
  s.set_queue_id(std::string(queue_id));
  s.set_client_address(client_address_);
  s.set_tls(tls_);
  s.set_connect_unix_us(connect_us_);
  s.set_mail_unix_us(mail_us_);
  s.set_eom_unix_us(now_unix_us);
  const bool delivered = AllRecipientsAreSinks();
  s.set_delivered(delivered);
  v->discard = delivered && policy_->discard_at_sinks;
  s.set_discarded(v->discard);
  v->edits.push_back({HeaderEdit::Kind::kInsertFirst, std::string(kHopStampHeader),
                      HopStamp(policy_->hop, now_unix_us, queue_id), 0});
  v->sighting = std::move(s);
}

void ProbeInspector::InspectDsn(std::int64_t now_unix_us, std::string_view queue_id,
                                ProbeVerdict* v) {
  StatusOr<DsnReport> report = ParseDsn(body_, dsn_boundary_);
  if (!report.ok() || report->returned_probe_token.empty()) return;  // not a probe's bounce
  // A delay warning ("delayed") or a relay notice is not the end of the journey: only a
  // report with a failed recipient is a bounce (RFC 3464 section 2.3.3).
  if (std::none_of(report->recipients.begin(), report->recipients.end(),
                   [](const DsnRecipient& r) { return r.action == "failed"; })) {
    return;
  }
  // A bounce may come days later, so its age is not judged; but only our own key's token
  // counts, or anyone could fake bounces.
  TokenLimits any_age;
  any_age.max_age_us = INT64_MAX / 2;
  any_age.max_future_us = INT64_MAX / 2;
  const TokenCheck check = VerifyProbeToken(*policy_->key, report->returned_probe_token,
                                            now_unix_us, any_age, nullptr, policy_->hop);
  if (check.problem != TokenProblem::kNone) {
    if (v->invalid == TokenProblem::kNone) v->invalid = check.problem;
    return;
  }
  proto::ProbeBounce b;
  b.set_probe_id(check.token.id);
  b.set_probe_source(check.token.source);
  b.set_probe_time_unix_us(check.token.time_unix_us);
  b.set_hop(policy_->hop);
  b.set_queue_id(std::string(queue_id));
  b.set_time_unix_us(now_unix_us);
  b.set_reporting_mta(report->reporting_mta);
  b.set_token_verified(true);
  for (const DsnRecipient& r : report->recipients) {
    proto::BounceRecipient* out = b.add_recipients();
    out->set_final_recipient(r.final_recipient);
    out->set_action(r.action);
    out->set_status(r.status);
    out->set_diagnostic_code(r.diagnostic_code);
    out->set_remote_mta(r.remote_mta);
  }
  v->bounce = std::move(b);
}

bool ProbeInspector::AllRecipientsAreSinks() const {
  if (recipients_.empty() || policy_->sinks.empty()) return false;
  return std::all_of(recipients_.begin(), recipients_.end(),
                     [this](const std::string& r) { return Contains(policy_->sinks, r); });
}

bool ProbeInspector::ToReturnPath() const {
  if (policy_->return_paths.empty()) return true;
  return std::any_of(recipients_.begin(), recipients_.end(),
                     [this](const std::string& r) { return Contains(policy_->return_paths, r); });
}

void ProbeInspector::ResetMessage() {
  mail_us_ = 0;
  recipients_.clear();
  tokens_.clear();
  dsn_boundary_.clear();
  body_.clear();
}

}  // namespace mailpulse
