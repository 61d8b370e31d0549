// `mailpulse-probe check`: one synthetic SMTP check for people and for Nagios-style monitors
// (Nagios, Icinga, Checkmk, Zabbix). It runs a CheckRunner on its own event loop, prints a
// per-phase report and ends with one plugin status line with perfdata; the exit code follows
// the plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. docs/probe.md is the
// reference. Planning is in check_plan.h, judging and formatting in check_verdict.h.
#pragma once

#include <string>
#include <vector>

#include "probe/check_plan.h"
#include "probe/check_verdict.h"

namespace CLI {
class App;
}

namespace mailpulse {

// What the command line says, as given (validated by RunCheckCommand).
struct CheckCommandOptions {
  std::string target;                  // HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address
  bool mx = false;                     // the target's host is a mail domain: check its MX hosts
  std::vector<std::string> resolvers;  // nameservers IP[:PORT]; empty: /etc/resolv.conf's
  std::string tls = "none";
  std::string tls_name;
  std::string auth_user;
  std::string auth_password_file;
  std::string from;
  std::vector<std::string> to;
  bool send = false;
  std::string helo;
  double timeout = 10;
  double phase_timeout = -1;  // -1: the same as timeout
  double warn = -1;           // -1: no threshold
  double crit = -1;
  int cert_warn_days = -1;
  int cert_crit_days = -1;
  std::string ca_file;
  bool insecure = false;
  bool ipv4 = false;
  bool ipv6 = false;
  bool quiet = false;
  bool verbose = false;
};

// Adds the `check` subcommand to `app`, storing into *options; returns the subcommand.
CLI::App* AddCheckCommand(CLI::App* app, CheckCommandOptions* options);

// Runs the check and prints the report and status line to stdout; returns the exit code.
int RunCheckCommand(const CheckCommandOptions& options);

}  // namespace mailpulse
