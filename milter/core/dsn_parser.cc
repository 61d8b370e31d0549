#include "milter/core/dsn_parser.h"

#include "milter/core/mime_reader.h"
#include "milter/core/session_accounting.h"
#include "shared/probe_token.h"
#include "shared/utf8.h"

namespace mailpulse {

namespace {

// A multipart/report has two or three parts (RFC 6522 section 3); some MTAs add a fourth.
constexpr std::size_t kMaxParts = 32;
constexpr std::size_t kMaxBoundary = 200;

// `text` as valid UTF-8 without control characters, at most `max_bytes` long, cut at a
// character boundary, without surrounding spaces. Report text is 8-bit junk often enough
// (Latin-1 diagnostics, raw bytes) and goes into proto3 strings, which must be UTF-8.
std::string CleanText(std::string_view text, std::size_t max_bytes) {
  std::string out;
  while (!text.empty()) {
    std::size_t len = Utf8SequenceLength(text);
    std::string_view piece = len == 0 ? std::string_view("\xef\xbf\xbd") : text.substr(0, len);
    if (len == 0) len = 1;
    if (piece.size() == 1 && (static_cast<unsigned char>(piece[0]) < 0x20 || piece[0] == 0x7f)) {
      piece = " ";
    }
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    text.remove_prefix(len);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  std::size_t start = 0;
  while (start < out.size() && out[start] == ' ') ++start;
  return out.substr(start);
}

// RFC 3464 sections 2.2.2, 2.3.1, 2.3.2, 2.3.5: "type ; value" ("rfc822; a@b", "dns; host").
// A value without the type is taken whole.
std::string_view TypedValue(std::string_view field) {
  const std::size_t semicolon = field.find(';');
  if (semicolon != std::string_view::npos) field.remove_prefix(semicolon + 1);
  while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
  while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
  return field;
}

std::string Address(const std::string* field) {
  if (field == nullptr) return "";
  std::string_view address = TypedValue(*field);
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  return CleanText(address, kMaxDsnFieldBytes);
}

// RFC 3464 section 2.3.3: one of five words; MTAs add a comment now and then.
std::string Action(const std::string* field) {
  if (field == nullptr) return "";
  std::string action;
  for (char c : *field) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c < 'a' || c > 'z' || action.size() == 32) break;
    action.push_back(c);
  }
  return action;
}

// RFC 3464 section 2.3.4: the RFC 3463 code, maybe followed by a comment ("5.0.0 (permanent
// failure)" from Sendmail).
std::string StatusCode(const std::string* field) {
  if (field == nullptr) return "";
  std::string_view code(*field);
  code = code.substr(0, code.find_first_not_of("0123456789."));
  if (code.size() > 16) return "";
  const std::string_view normal = NormalizeEnhancedStatus(code);
  return normal == "unknown" ? "" : std::string(normal);
}

// One block of per-recipient fields (RFC 3464 section 2.3) into `report`. A block with none
// of the fields that make a recipient block (the per-message block, an X- block) is ignored.
void AddRecipient(const mime::HeaderBlock& block, DsnReport* report) {
  const std::string* final_recipient = mime::FindField(block, "Final-Recipient");
  const std::string* original_recipient = mime::FindField(block, "Original-Recipient");
  const std::string* action = mime::FindField(block, "Action");
  const std::string* status = mime::FindField(block, "Status");
  if (!final_recipient && !original_recipient && !action && !status) return;
  if (report->recipients.size() == kMaxDsnRecipients) {
    ++report->omitted_recipients;
    return;
  }
  DsnRecipient r;
  r.final_recipient = Address(final_recipient);
  if (r.final_recipient.empty()) r.final_recipient = Address(original_recipient);
  r.action = Action(action);
  r.status = StatusCode(status);
  if (const std::string* code = mime::FindField(block, "Diagnostic-Code")) {
    r.diagnostic_code = CleanText(*code, kMaxDsnFieldBytes);
  }
  if (const std::string* mta = mime::FindField(block, "Remote-MTA")) {
    r.remote_mta = CleanText(TypedValue(*mta), kMaxDsnFieldBytes);
  }
  report->recipients.push_back(std::move(r));
}

// The content of a message/delivery-status part (RFC 3464 section 2.1): per-message fields,
// then per-recipient blocks, each after one or more empty lines. The Reporting-MTA is taken
// from the first block that has one, and every block that names a recipient is one, so a
// report that puts everything in one block is read too.
Status ReadDeliveryStatus(std::string_view content, bool complete, DsnReport* report) {
  while (!content.empty()) {
    StatusOr<mime::HeaderBlock> block = mime::ReadHeaderBlock(content, complete);
    if (!block.ok()) return block.status();
    content = block->ended ? block->body : std::string_view();
    if (report->reporting_mta.empty()) {
      if (const std::string* mta = mime::FindField(*block, "Reporting-MTA")) {
        report->reporting_mta = CleanText(TypedValue(*mta), kMaxDsnFieldBytes);
      }
    }
    AddRecipient(*block, report);
  }
  return Status::Ok();
}

struct Part {
  std::string type;      // lower case; text/plain when not given (RFC 2045 section 5.2)
  std::string encoding;  // Content-Transfer-Encoding as given
  std::string_view content;
  bool complete = false;
};

StatusOr<std::vector<Part>> ReadParts(const std::vector<mime::BodyPart>& body_parts) {
  std::vector<Part> parts;
  for (const mime::BodyPart& body_part : body_parts) {
    StatusOr<mime::HeaderBlock> header = mime::ReadHeaderBlock(body_part.text, body_part.complete);
    if (!header.ok()) return header.status();
    Part part;
    part.type = "text/plain";
    if (const std::string* value = mime::FindField(*header, "Content-Type")) {
      if (auto content_type = mime::ParseContentType(*value)) part.type = content_type->type;
    }
    if (const std::string* value = mime::FindField(*header, "Content-Transfer-Encoding")) {
      part.encoding = *value;
    }
    part.content = header->body;
    part.complete = body_part.complete;
    parts.push_back(std::move(part));
  }
  return parts;
}

// The part's content, decoded into `storage` when it is base64 or quoted-printable.
std::string_view Content(const Part& part, std::string* storage) {
  if (!mime::IsDecodable(part.encoding)) return part.content;
  *storage = mime::DecodeTransferEncoding(part.content, part.encoding);
  return *storage;
}

bool IsDeliveryStatus(const std::string& type) {
  return type == "message/delivery-status" || type == "message/global-delivery-status";
}

bool IsReturnedMessage(const std::string& type) {
  return type == "message/rfc822" || type == "text/rfc822-headers" || type == "message/global" ||
         type == "message/global-headers";
}

// The header block of a returned message or of returned headers alike; the first token wins.
StatusOr<std::string> ReturnedToken(const Part& part) {
  std::string storage;
  StatusOr<mime::HeaderBlock> header =
      mime::ReadHeaderBlock(Content(part, &storage), part.complete);
  if (!header.ok()) return header.status();
  const std::string* token = mime::FindField(*header, kProbeTokenHeader);
  return token ? CleanText(*token, mime::kMaxHeaderLine) : std::string();
}

}  // namespace

std::optional<std::string> DsnBoundary(std::string_view content_type) {
  std::optional<mime::ContentType> parsed = mime::ParseContentType(content_type);
  if (!parsed || parsed->type != "multipart/report") return std::nullopt;
  const std::string* report_type = parsed->Parameter("report-type");
  if (!report_type || !mime::EqualsNoCase(*report_type, "delivery-status")) return std::nullopt;
  const std::string* boundary = parsed->Parameter("boundary");
  if (!boundary || boundary->empty() || boundary->size() > kMaxBoundary) return std::nullopt;
  for (char c : *boundary) {
    if (c < ' ' || c > '~') return std::nullopt;
  }
  return *boundary;
}

StatusOr<DsnReport> ParseDsn(std::string_view body, std::string_view boundary) {
  if (boundary.empty()) return Status::Error("empty boundary");
  // A body longer than this is read as if cut there: its last part is then incomplete unless
  // the close delimiter came first.
  body = body.substr(0, kMaxDsnBytes);
  StatusOr<std::vector<Part>> parts = ReadParts(mime::SplitMultipart(body, boundary, kMaxParts));
  if (!parts.ok()) return parts.status();
  if (parts->empty()) return Status::Error("no part delimited by the boundary");

  std::size_t status_index = 0;
  while (status_index < parts->size() && !IsDeliveryStatus((*parts)[status_index].type)) {
    ++status_index;
  }
  if (status_index == parts->size()) return Status::Error("no message/delivery-status part");
  const Part& status_part = (*parts)[status_index];
  DsnReport report;
  std::string storage;
  Status read = ReadDeliveryStatus(Content(status_part, &storage), status_part.complete, &report);
  if (!read.ok()) return read;
  if (report.recipients.empty()) return Status::Error("no recipient");

  // RFC 6522 section 3: the returned message or its headers follow the report.
  for (std::size_t i = status_index + 1; i < parts->size(); ++i) {
    if (!IsReturnedMessage((*parts)[i].type)) continue;
    StatusOr<std::string> token = ReturnedToken((*parts)[i]);
    if (!token.ok()) return token.status();
    report.returned_probe_token = std::move(*token);
    break;
  }
  return report;
}

}  // namespace mailpulse
