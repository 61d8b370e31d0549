#include "probe/check_verdict.h"

#include <array>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "probe/smtp/smtp_text.h"

namespace mailpulse {
namespace {

constexpr std::size_t kMaxReasonLength = 512;

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

std::string Threshold(const std::optional<double>& t) { return t ? Printf("%g", *t) : ""; }
std::string Threshold(const std::optional<int>& t) { return t ? std::to_string(*t) : ""; }

double PhaseSeconds(const CheckResult& r, Phase p) {
  return r.phase_seconds[static_cast<std::size_t>(p)];
}

std::string Perfdata(const CheckResult& r, const CheckThresholds& t, bool implicit_tls,
                     std::int64_t now_unix) {
  std::string out;
  for (Phase p : PhaseOrder(implicit_tls)) {
    const double s = PhaseSeconds(r, p);
    if (s < 0) continue;
    out += std::string(PhaseName(p)) + Printf("=%.6fs;;;0 ", s);
  }
  out += Printf("total=%.6fs;", r.total_seconds) + Threshold(t.warn_seconds) + ";" +
         Threshold(t.crit_seconds) + ";0";
  if (r.tls.established && r.tls.not_after_unix != 0) {
    out += " cert_days=" + std::to_string(CertificateDaysLeft(r.tls.not_after_unix, now_unix)) +
           ";" + Threshold(t.cert_warn_days) + ";" + Threshold(t.cert_crit_days);
  }
  return out;
}

std::string CapabilitiesText(const Capabilities& c) {
  if (!c.esmtp) return "none (HELO only)";
  std::string out = "ESMTP";
  if (c.pipelining) out += " PIPELINING";
  if (c.size) out += " SIZE=" + std::to_string(*c.size);
  if (c.starttls) out += " STARTTLS";
  if (c.eight_bit_mime) out += " 8BITMIME";
  if (c.smtputf8) out += " SMTPUTF8";
  if (!c.auth_mechanisms.empty()) {
    out += " AUTH=";
    for (std::size_t i = 0; i < c.auth_mechanisms.size(); ++i) {
      out += (i > 0 ? "," : "") + OneLine(c.auth_mechanisms[i]);
    }
  }
  return out;
}

std::string UtcTime(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[64] = "?";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// "expires in 12 days", "expired 3 days ago" (whole days, rounded down either way).
std::string ExpiryText(std::int64_t not_after_unix, std::int64_t now_unix) {
  if (not_after_unix >= now_unix) {
    return "expires in " + std::to_string(CertificateDaysLeft(not_after_unix, now_unix)) + " days";
  }
  return "expired " + std::to_string((now_unix - not_after_unix) / 86400) + " days ago";
}

std::string TlsReport(const TlsFacts& tls, bool verify, std::int64_t now_unix) {
  std::string out = "tls            " + tls.version + " " + tls.cipher + "\n";
  out += "  subject      " + tls.subject + "\n";
  out += "  issuer       " + tls.issuer + "\n";
  std::string names;
  for (const std::string& n : tls.subject_alt_names) names += (names.empty() ? "" : " ") + n;
  if (!names.empty()) out += "  alt names    " + names + "\n";
  if (tls.not_after_unix != 0) {
    out += "  not after    " + UtcTime(tls.not_after_unix) + " (" +
           ExpiryText(tls.not_after_unix, now_unix) + ")\n";
  }
  out += "  verified     " +
         std::string(!verify        ? "not checked (--insecure)"
                     : tls.verified ? "yes"
                                    : "no: " + tls.verify_error) +
         "\n";
  return out;
}

}  // namespace

std::string_view NagiosStateName(NagiosState state) {
  static constexpr std::array<std::string_view, 4> kNames = {"OK", "WARNING", "CRITICAL",
                                                             "UNKNOWN"};
  return kNames[static_cast<std::size_t>(state)];
}

std::string OneLine(std::string_view text) { return Printable(text, kMaxReasonLength, "|"); }

std::vector<Phase> PhaseOrder(bool implicit_tls) {
  std::vector<Phase> order;
  for (int i = 0; i < kPhaseCount; ++i) {
    const auto p = static_cast<Phase>(i);
    if (implicit_tls && p == Phase::kTlsHandshake) continue;
    order.push_back(p);
    if (implicit_tls && p == Phase::kConnect) order.push_back(Phase::kTlsHandshake);
  }
  return order;
}

std::string FailureReason(const CheckOutcome& o) {
  std::string reason;
  if (o.reply && !o.detail.empty()) {
    reason = o.detail + "; server said: " + o.reply->ToString();
  } else if (o.reply) {
    reason = o.reply->ToString();
  } else {
    reason = o.detail;
  }
  return OneLine(reason);
}

std::string UnknownStatusLine(std::string_view message) {
  return "SMTP UNKNOWN - " + OneLine(message);
}

std::int64_t CertificateDaysLeft(std::int64_t not_after_unix, std::int64_t now_unix) {
  const std::int64_t seconds = not_after_unix - now_unix;
  return seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
}

CheckVerdict JudgeCheck(std::string_view target, const CheckResult& result,
                        const CheckThresholds& t, bool implicit_tls, std::int64_t now_unix) {
  CheckVerdict v;
  const std::string perfdata = Perfdata(result, t, implicit_tls, now_unix);
  const CheckOutcome& o = result.outcome;
  if (!o.success) {
    v.state = NagiosState::kCritical;
    const std::string reason = FailureReason(o);
    v.summary = std::string(FailureKindName(o.failure)) + " at " + std::string(PhaseName(o.phase)) +
                (reason.empty() ? "" : ": " + reason);
    v.status_line = "SMTP CRITICAL - " + v.summary + " | " + perfdata;
    return v;
  }
  v.state = NagiosState::kOk;
  std::vector<std::string> reasons;
  const auto raise = [&v, &reasons](NagiosState s, std::string why) {
    if (static_cast<int>(s) > static_cast<int>(v.state)) v.state = s;
    reasons.push_back(std::move(why));
  };
  const std::string total = Printf("%.3fs", result.total_seconds);
  if (t.crit_seconds && result.total_seconds > *t.crit_seconds) {
    raise(NagiosState::kCritical,
          "total " + total + " above critical threshold " + Threshold(t.crit_seconds) + "s");
  } else if (t.warn_seconds && result.total_seconds > *t.warn_seconds) {
    raise(NagiosState::kWarning,
          "total " + total + " above warning threshold " + Threshold(t.warn_seconds) + "s");
  }
  if (result.tls.established && result.tls.not_after_unix != 0) {
    const std::int64_t days = CertificateDaysLeft(result.tls.not_after_unix, now_unix);
    const std::string when = "certificate " + ExpiryText(result.tls.not_after_unix, now_unix);
    if (t.cert_crit_days && days <= *t.cert_crit_days) {
      raise(NagiosState::kCritical, when + " (critical at " + Threshold(t.cert_crit_days) + ")");
    } else if (t.cert_warn_days && days <= *t.cert_warn_days) {
      raise(NagiosState::kWarning, when + " (warning at " + Threshold(t.cert_warn_days) + ")");
    }
  }
  v.summary = std::string(target) + " " + total;
  for (std::size_t i = 0; i < reasons.size(); ++i) v.summary += (i == 0 ? ": " : ", ") + reasons[i];
  v.status_line =
      "SMTP " + std::string(NagiosStateName(v.state)) + " - " + v.summary + " | " + perfdata;
  return v;
}

std::string FormatCheckReport(const CheckResult& result, bool implicit_tls, bool verify,
                              std::int64_t now_unix) {
  const CheckOutcome& o = result.outcome;
  std::string out;
  if (!result.mx_host.empty()) out += "mx host        " + OneLine(result.mx_host) + "\n";
  if (!result.address.empty()) out += "address        " + result.address + "\n";
  for (Phase p : PhaseOrder(implicit_tls)) {
    const double s = PhaseSeconds(result, p);
    const bool failed_here = !o.success && o.phase == p;
    if (s < 0 && !failed_here) continue;
    char line[64];
    if (s < 0) {
      std::snprintf(line, sizeof line, "%-14s %10s   ", std::string(PhaseName(p)).c_str(), "-");
    } else {
      std::snprintf(line, sizeof line, "%-14s %10.3f ms", std::string(PhaseName(p)).c_str(),
                    s * 1000);
    }
    out += line;
    if (failed_here)
      out += "  " + std::string(FailureKindName(o.failure)) + ": " + FailureReason(o);
    out += "\n";
  }
  out += Printf("total          %10.3f ms\n", result.total_seconds * 1000);
  if (result.tls.established) out += TlsReport(result.tls, verify, now_unix);
  const bool greeted = PhaseSeconds(result, Phase::kEhlo) >= 0 &&
                       (o.success || (o.phase != Phase::kEhlo && o.phase != Phase::kBanner));
  if (greeted) out += "capabilities   " + CapabilitiesText(o.capabilities) + "\n";
  if (!o.queue_id.empty()) out += "queue id       " + OneLine(o.queue_id) + "\n";
  return out;
}

}  // namespace mailpulse
