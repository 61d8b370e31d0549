// Reading a FETCH response's header section and the probe message in it (probe_message.h).
#include "probe/imap/probe_message.h"

#include "probe/imap/imap_text.h"

namespace mailpulse {

StatusOr<std::optional<FetchedHeaders>> ReadFetchedHeaders(const ImapResponse& fetch) {
  if (fetch.values.size() != 1 || fetch.values[0].kind != ImapValue::Kind::kList ||
      fetch.values[0].values.size() % 2 != 0) {
    return Status::Error("FETCH response that is not a list of items");
  }
  std::optional<std::uint32_t> uid;
  const ImapValue* header = nullptr;
  const std::vector<ImapValue>& items = fetch.values[0].values;
  for (std::size_t i = 0; i < items.size(); i += 2) {
    if (items[i].IsAtom("UID")) uid = items[i + 1].Number();
    if (items[i].kind == ImapValue::Kind::kAtom &&
        ImapUpper(items[i].text).starts_with("BODY[HEADER.FIELDS") &&
        items[i + 1].kind == ImapValue::Kind::kString) {
      header = &items[i + 1];
    }
  }
  if (!uid || header == nullptr) return std::optional<FetchedHeaders>();
  return std::optional<FetchedHeaders>(FetchedHeaders{*uid, header->text});
}

std::optional<ProbeMessage> ReadProbeMessage(std::uint32_t uid, std::string_view header_section,
                                             std::string_view probe_id) {
  ProbeMessage m;
  m.uid = uid;
  for (const HeaderField& f : ParseHeaderFields(header_section)) {
    if (HeaderNameIs(f, "X-Mailpulse-Probe")) {
      if (m.probe_header.empty() && ProbeIdOfHeader(f.value) == probe_id) m.probe_header = f.value;
    } else if (HeaderNameIs(f, "X-Mailpulse-Hop")) {
      m.hop_stamps.push_back(f.value);
    } else if (HeaderNameIs(f, "Date") && m.date.empty()) {
      m.date = f.value;
    } else if (HeaderNameIs(f, "Message-ID") && m.message_id.empty()) {
      m.message_id = f.value;
    }
  }
  if (m.probe_header.empty()) return std::nullopt;
  return m;
}

}  // namespace mailpulse
