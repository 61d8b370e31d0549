// ProbeDaemon: `mailpulse-probe run`. One libevent loop does everything: it checks every
// configured target on its schedule (CheckScheduler) with CheckRunners, bounded in how many run
// at once; serves GET /metrics; owns the shared event socket the milters report to; and sends
// each check's result as a probe-result event to probe.report_to when one is set. SIGHUP
// rereads the configuration file (targets and limits change live; a bad file is logged with
// its file:line and the running configuration kept); SIGTERM or SIGINT stop it cleanly:
// checks in flight are abandoned, their connections closed. Not thread-safe: everything runs
// on the loop's thread.
#pragma once

#include <memory>
#include <string>

#include "probe/probe_config.h"
#include "shared/config.h"
#include "shared/net/privileges.h"
#include "shared/status.h"

namespace mailpulse {

class ProbeDaemon {
 public:
  // Binds the event socket and /metrics (so the caller may still be root) and prepares the
  // targets' TLS contexts. `config_path` is what SIGHUP rereads ("": nothing to reread).
  static StatusOr<std::unique_ptr<ProbeDaemon>> Create(std::string config_path,
                                                       ProbeSettings settings);
  ~ProbeDaemon();
  ProbeDaemon(const ProbeDaemon&) = delete;
  ProbeDaemon& operator=(const ProbeDaemon&) = delete;

  // Hands the unix event socket to `run_as` (and probe.event_socket_group) and becomes it.
  Status DropPrivileges(const RunAs& run_as);
  // After daemon(3) forked: libevent's kernel state must be rebuilt in the child.
  Status AfterFork();

  // Runs until SIGTERM or SIGINT; returns the exit code.
  int Run();

  class Impl;

 private:
  explicit ProbeDaemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailpulse
