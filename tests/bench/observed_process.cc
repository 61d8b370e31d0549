#include "tests/bench/observed_process.h"

#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

namespace mailpulse {
namespace {

// Fields of /proc/PID/stat after the command name; empty when the process is gone.
std::vector<std::string> ProcStat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t paren = text.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream rest(text.substr(paren + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// The whole reply to GET /metrics, or "" when nobody answered.
std::string GetMetrics(const Endpoint& metrics) {
  const std::string port = std::to_string(metrics.port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(metrics.host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return "";
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addr(found, freeaddrinfo);
  const int fd = socket(addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  const timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string reply;
  if (connect(fd, addr->ai_addr, addr->ai_addrlen) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: " + metrics.host + "\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[16384];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, n);
    }
  }
  close(fd);
  return reply;
}

}  // namespace

double ProcessCpuSeconds(int pid) {
  const std::vector<std::string> f = ProcStat(pid);
  if (f.size() < 13) return 0;
  return static_cast<double>(std::stoll(f[11]) + std::stoll(f[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

char ProcessState(int pid) {
  const std::vector<std::string> f = ProcStat(pid);
  return f.empty() ? 'X' : f[0][0];
}

Status SignalProcess(int pid, int sig, std::string_view states) {
  if (kill(pid, sig) != 0 && errno != ESRCH) {
    return Status::Error("kill(" + std::to_string(pid) + "): " + std::strerror(errno));
  }
  if (!PollUntil([&] { return states.find(ProcessState(pid)) != std::string_view::npos; }, 10)) {
    return Status::Error("process " + std::to_string(pid) + " not in state " + std::string(states));
  }
  return Status::Ok();
}

std::pair<long long, long long> MachineTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long v[8] = {};
  in >> cpu;
  for (long long& x : v) in >> x;
  long long total = 0;
  for (long long x : v) total += x;
  return {total - v[3] - v[4], total};
}

StatusOr<long long> ScrapeCounter(const Endpoint& metrics, std::string_view series) {
  const std::string reply = GetMetrics(metrics);
  const std::size_t head_end = reply.find("\r\n");
  if (reply.rfind("HTTP/1.", 0) != 0 ||
      reply.substr(0, head_end).find(" 200 ") == std::string::npos) {
    return Status::Error("metrics " + metrics.ToString() + ": no answer");
  }
  const std::string line_start = "\n" + std::string(series) + " ";
  const std::size_t at = reply.find(line_start);
  if (at == std::string::npos) return 0LL;
  return std::stoll(reply.substr(at + line_start.size()));
}

bool PollUntil(const std::function<bool()>& done, double timeout) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                        std::chrono::duration<double>(timeout));
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace mailpulse
