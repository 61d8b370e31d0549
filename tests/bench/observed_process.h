// What a benchmark driver observes of a process it drives from outside — its CPU time and
// state from /proc, one counter of its Prometheus /metrics — and the machine's busy time.
// Blocking calls, for drivers on loopback only (tests/bench); thread-compatible free functions.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "shared/endpoint.h"
#include "shared/status.h"

namespace mailpulse {

// utime + stime of process `pid` in seconds, all its threads; 0 when it is gone.
double ProcessCpuSeconds(int pid);

// The process state letter of /proc/PID/stat (R, S, T, Z, ...); 'X' when it is gone.
char ProcessState(int pid);

// Sends `sig` to `pid`, then waits (up to 10 s) until its state is one of `states`.
Status SignalProcess(int pid, int sig, std::string_view states);

// Busy and total jiffies of all CPUs (/proc/stat; iowait counts as idle).
std::pair<long long, long long> MachineTicks();

// The value of one series (its name and labels exactly as exposed, e.g.
// `x_total{kind="a"}`) from one GET /metrics over HTTP/1.0: 0 when the series is absent, an
// error when nobody answers with 200 within 5 s.
StatusOr<long long> ScrapeCounter(const Endpoint& metrics, std::string_view series);

// Calls `done` every 10 ms until it returns true; false once `timeout` seconds have passed.
bool PollUntil(const std::function<bool()>& done, double timeout);

}  // namespace mailpulse
