// libFuzzer target for the DSN parser: the input is a whole message as the milter would see
// it (header, empty line, body). Its Content-Type goes through DsnBoundary and its body
// through ParseDsn, with boundary "b" when the header announces no DSN, so that the body
// parser is reached either way; DsnBoundary also gets the raw input. Besides not crashing,
// every report must keep the header's promises (bounded, clean UTF-8); a broken promise
// aborts, which libFuzzer reports like a crash.
//
// Seed corpus: tests/unit/milter/dsn/*.eml; dictionary: dsn_parser.dict (see docs/roundtrip.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "milter/core/dsn_parser.h"
#include "milter/core/mime_reader.h"

namespace {

bool IsCleanUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80                 ? 1
                            : c >= 0xc2 && c <= 0xdf ? 2
                            : c >= 0xe0 && c <= 0xef ? 3
                            : c >= 0xf0 && c <= 0xf4 ? 4
                                                     : 0;
    if (len == 0 || i + len > s.size() || c < 0x20 || c == 0x7f) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

void Require(bool promise) {
  if (!promise) std::abort();
}

void CheckReport(const mailpulse::DsnReport& report) {
  Require(!report.recipients.empty());
  Require(report.recipients.size() <= mailpulse::kMaxDsnRecipients);
  Require(report.omitted_recipients == 0 ||
          report.recipients.size() == mailpulse::kMaxDsnRecipients);
  Require(report.reporting_mta.size() <= mailpulse::kMaxDsnFieldBytes);
  Require(IsCleanUtf8(report.reporting_mta));
  Require(IsCleanUtf8(report.returned_probe_token));
  for (const mailpulse::DsnRecipient& r : report.recipients) {
    for (const std::string* s :
         {&r.final_recipient, &r.action, &r.status, &r.diagnostic_code, &r.remote_mta}) {
      Require(s->size() <= mailpulse::kMaxDsnFieldBytes);
      Require(IsCleanUtf8(*s));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (std::optional<std::string> b = mailpulse::DsnBoundary(input)) Require(!b->empty());

  mailpulse::StatusOr<mailpulse::mime::HeaderBlock> header =
      mailpulse::mime::ReadHeaderBlock(input, /*text_complete=*/true);
  if (!header.ok()) return 0;
  std::optional<std::string> boundary;
  if (const std::string* content_type = mailpulse::mime::FindField(*header, "Content-Type")) {
    boundary = mailpulse::DsnBoundary(*content_type);
  }
  mailpulse::StatusOr<mailpulse::DsnReport> report =
      mailpulse::ParseDsn(header->body, boundary ? *boundary : std::string("b"));
  if (report.ok()) CheckReport(*report);
  return 0;
}
