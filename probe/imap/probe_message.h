// What an IMAP confirmation reads back from the mailbox: the header section a UID FETCH
// returns for a message (RFC 3501 section 7.4.2) and, from it, the probe message — the
// X-Mailpulse-Probe value whose id matches exactly (SEARCH matched a substring only) and
// every X-Mailpulse-Hop stamp in header order. The hop stamps stay raw header values here;
// ParseHopStamp (shared/probe_token.h) reads them. Pure functions on untrusted input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probe/imap/imap_response.h"
#include "shared/status.h"

namespace mailpulse {

// A message whose X-Mailpulse-Probe header carries the probe id, with the headers a probe
// reads back; values unfolded, as the message carries them.
struct ProbeMessage {
  std::uint32_t uid = 0;
  std::string probe_header;             // the X-Mailpulse-Probe value that matched
  std::vector<std::string> hop_stamps;  // every X-Mailpulse-Hop value, in header order
  std::string date;
  std::string message_id;
};

struct FetchedHeaders {
  std::uint32_t uid = 0;
  std::string header_section;  // the BODY[HEADER.FIELDS (...)] string
};

// The UID and header section of "* n FETCH (UID u BODY[HEADER.FIELDS (...)] {len}...)", items
// in any order; nullopt for a FETCH without both (a flag change another client made). An
// error when the response is not a list of item-value pairs.
StatusOr<std::optional<FetchedHeaders>> ReadFetchedHeaders(const ImapResponse& fetch);

// The probe message in `header_section`, or nullopt when no X-Mailpulse-Probe value has
// exactly `probe_id` (lower case) as its id.
std::optional<ProbeMessage> ReadProbeMessage(std::uint32_t uid, std::string_view header_section,
                                             std::string_view probe_id);

}  // namespace mailpulse
