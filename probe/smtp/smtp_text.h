// The textual conventions of the SMTP client, apart from the state machine that uses them:
// base64 for AUTH (RFC 4648), message transparency for DATA (RFC 5321 4.5.2), EHLO keyword
// parsing (RFC 5321 4.1.1.1 and the extensions it names) and the queue id in the reply to the
// message data. Pure functions; every input may come from an untrusted server.
#pragma once

#include <string>
#include <string_view>

#include "probe/smtp/smtp_reply.h"
#include "probe/smtp/smtp_session.h"

namespace mailpulse {

// Standard alphabet with "=" padding.
std::string Base64Encode(std::string_view bytes);

// The message as DATA content: every line ends in CRLF (LF and CRLF input alike, a last line
// without a newline gets one) and a line starting with "." gets another. The caller appends
// ".\r\n".
std::string DotStuff(std::string_view message);

// Capabilities from a 250 reply to EHLO: keywords in any order and case, "AUTH=..." of old
// clients' servers, "SIZE n". Unknown keywords and malformed parameters are ignored.
Capabilities ParseEhloCapabilities(const SmtpReply& reply);

// Best effort: Postfix "queued as X", Exim "id=X", Sendmail "X Message accepted for
// delivery". "" when the reply names none (Exchange: "Queued mail for delivery").
std::string QueueIdFromReply(const SmtpReply& reply);

// Text from a peer (replies, certificate fields) made safe for one report or status line:
// printable ASCII kept, every other byte and those in `also_escape` written as \xNN, cut
// with "..." once `max_length` characters are out.
std::string Printable(std::string_view s, std::size_t max_length = std::string::npos,
                      std::string_view also_escape = {});

}  // namespace mailpulse
