// `mailpulse-probe keygen FILE`: a new probe key (ProbeKey::Generate, shared/probe_token.h)
// in a new file that only its owner may read — the file every milter and the probe then name
// as their key file (docs/roundtrip.md, "Probe token"). Never overwrites a file and never
// prints the key.
#pragma once

#include <string>

#include "shared/status.h"

namespace CLI {
class App;
}

namespace mailpulse {

// Creates `path` (O_CREAT|O_EXCL, mode 0600, so an existing file or a symlink is refused) and
// writes one generated key line to it, synced to disk. On a failed write the new file is
// removed again. Errors name the path, never the key.
Status WriteNewKeyFile(const std::string& path);

// Adds the subcommand; *path receives its FILE.
CLI::App* AddKeygenCommand(CLI::App* app, std::string* path);
// Runs it: one line on stdout on success (the path, not the key), one on stderr on failure.
// Exit code 0, or 1 on failure.
int RunKeygenCommand(const std::string& path);

}  // namespace mailpulse
