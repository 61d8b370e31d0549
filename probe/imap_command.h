// `mailpulse-probe imap-find`: one IMAP confirmation for people and tests. It logs in to a
// mailbox over TLS (implicit or STARTTLS), finds the probe message with the given id, prints
// its hop trail and deletes it (unless --keep). Exit codes: 0 found, 1 not found, 2 error
// (usage errors included). It runs an ImapConfirmer on its own event loop; docs/roundtrip.md,
// "IMAP confirmation", is the reference. The formatting and exit code functions are pure and
// thread-safe.
#pragma once

#include <string>
#include <vector>

#include "probe/imap_confirmer.h"

namespace CLI {
class App;
}

namespace mailpulse {

inline constexpr int kImapFindFound = 0;
inline constexpr int kImapFindNotFound = 1;
inline constexpr int kImapFindError = 2;

// What the command line says, as given (validated by RunImapFindCommand).
struct ImapFindOptions {
  std::string host;
  int port = 0;  // 0: 993 with --tls implicit, 143 with starttls
  std::string tls = "implicit";
  std::string tls_name;
  std::string ca_file;
  bool insecure = false;
  std::string user;
  std::string password_file;
  std::string mailbox = "INBOX";
  std::string auth = "auto";
  bool keep = false;
  std::vector<std::string> resolvers;
  double timeout = 30;
  double phase_timeout = 10;
  bool verbose = false;
  std::string probe_id;
};

// Adds the `imap-find` subcommand to `app`, storing into *options; returns the subcommand.
CLI::App* AddImapFindCommand(CLI::App* app, ImapFindOptions* options);

// Whether the command line names `imap-find`, whose usage errors exit with kImapFindError.
bool IsImapFindCommand(int argc, char** argv);

// Runs the confirmation, prints the report to stdout; returns the exit code.
int RunImapFindCommand(const ImapFindOptions& options);

// The report: a first line "FOUND ...", "NOT FOUND ..." or "ERROR <kind> at <phase>: <why>",
// then each confirmed message's uid, Message-ID, Date, X-Mailpulse-Probe and every
// X-Mailpulse-Hop (in header order). `where` names the mailbox ("INBOX at host:993").
std::string FormatImapFindReport(const ImapResult& result, const std::string& probe_id,
                                 const std::string& where, bool keep);
int ImapFindExitCode(const ImapResult& result);

}  // namespace mailpulse
