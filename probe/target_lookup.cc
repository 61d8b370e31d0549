#include "probe/target_lookup.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "probe/resolver.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

bool SameAddress(const SocketAddress& a, const SocketAddress& b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

// "mx.example.org: no address ..." without the leading "mx.example.org: ".
std::string WithoutHost(const std::string& message, const std::string& host) {
  const std::string prefix = host + ": ";
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

std::string JoinHosts(const std::vector<std::string>& hosts) {
  std::string out;
  for (const std::string& h : hosts) out += (out.empty() ? "" : ", ") + h;
  return out;
}

}  // namespace

TargetLookup::TargetLookup(Resolver* resolver, std::string host, std::uint16_t port,
                           AddressFamily family, bool mx, Done done)
    : resolver_(resolver),
      host_(std::move(host)),
      port_(port),
      family_(family),
      mx_(mx),
      done_(std::move(done)) {}

// The sub-lookups cancel themselves; none of their callbacks can reach us after this.
TargetLookup::~TargetLookup() = default;

void TargetLookup::Start() {
  if (!mx_) {
    host_lookup_ = std::make_unique<AddressLookup>(
        resolver_->evdns(), host_, port_, family_,
        [this](StatusOr<std::vector<SocketAddress>> answer) {
          Done done = std::move(done_);  // `this` may be destroyed by done
          if (!answer.ok()) {
            done(answer.status());
            return;
          }
          std::vector<ConnectCandidate> candidates;
          for (const SocketAddress& a : *answer) candidates.push_back({a, ""});
          done(std::move(candidates));
        });
    host_lookup_->Start();  // may call back, and destroy `this`, before returning
    return;
  }
  mx_lookup_ = std::make_unique<MxLookup>(
      resolver_->ares(), host_,
      [this](StatusOr<MxHosts> answer) { HandleMxHosts(std::move(answer)); });
  mx_lookup_->Start();  // may call back, and destroy `this`, before returning
}

void TargetLookup::HandleMxHosts(StatusOr<MxHosts> answer) {
  mx_answered_ = true;
  if (!answer.ok()) {
    Done done = std::move(done_);
    done(answer.status());
    return;
  }
  for (const std::string& bad : answer->rejected) {
    MP_LOG_WARNING("%s: MX '%s' is not a host name; skipped", host_.c_str(), bad.c_str());
  }
  implicit_mx_ = answer->implicit;
  mx_hosts_ = std::move(answer->hosts);
  MP_LOG_DEBUG("%s: MX hosts in order: %s%s", host_.c_str(), JoinHosts(mx_hosts_).c_str(),
               implicit_mx_ ? " (no MX record: implicit MX)" : "");
  mx_host_answers_.resize(mx_hosts_.size());
  for (std::size_t i = 0; i < mx_hosts_.size(); ++i) {
    mx_host_lookups_.push_back(
        std::make_unique<AddressLookup>(resolver_->evdns(), mx_hosts_[i], port_, family_,
                                        [this, i](StatusOr<std::vector<SocketAddress>> addresses) {
                                          HandleAddresses(i, std::move(addresses));
                                        }));
  }
  // A lookup answered from the hosts file calls back from within Start: the result is only
  // complete once every lookup has been started.
  starting_mx_host_lookups_ = true;
  for (const auto& lookup : mx_host_lookups_) lookup->Start();
  starting_mx_host_lookups_ = false;
  FinishWhenComplete();
}

void TargetLookup::HandleAddresses(std::size_t index, StatusOr<std::vector<SocketAddress>> answer) {
  if (!answer.ok()) {
    MP_LOG_DEBUG("%s: MX host %s", host_.c_str(), answer.status().message().c_str());
  }
  mx_host_answers_[index] = std::move(answer);
  if (!starting_mx_host_lookups_) FinishWhenComplete();
}

// RFC 5321 5.1: the hosts in MX order, each with all its addresses; an address already
// listed for a better MX host is not tried again.
void TargetLookup::FinishWhenComplete() {
  if (std::any_of(mx_host_answers_.begin(), mx_host_answers_.end(),
                  [](const auto& a) { return !a.has_value(); })) {
    return;
  }
  std::vector<ConnectCandidate> candidates;
  std::string first_error;
  for (std::size_t i = 0; i < mx_hosts_.size(); ++i) {
    auto& answer = *mx_host_answers_[i];
    if (!answer.ok()) {
      if (first_error.empty()) first_error = answer.status().message();
      continue;
    }
    for (const SocketAddress& a : *answer) {
      const bool listed = std::any_of(candidates.begin(), candidates.end(),
                                      [&a](const auto& c) { return SameAddress(c.address, a); });
      if (!listed) candidates.push_back({a, mx_hosts_[i]});
    }
  }
  Done done = std::move(done_);  // `this` may be destroyed by done
  if (!candidates.empty()) {
    done(std::move(candidates));
  } else if (implicit_mx_) {
    done(Status::Error(host_ + ": no MX and no address (" + WithoutHost(first_error, host_) + ")"));
  } else {
    done(Status::Error(host_ + ": no MX host has an address (" + first_error + ")"));
  }
}

std::string TargetLookup::WaitingFor() const {
  if (!mx_) return "";
  if (!mx_answered_) return "the MX records";
  std::vector<std::string> pending;
  for (std::size_t i = 0; i < mx_hosts_.size(); ++i) {
    if (!mx_host_answers_[i].has_value()) pending.push_back(mx_hosts_[i]);
  }
  return pending.empty() ? "" : "the address of " + JoinHosts(pending);
}

}  // namespace mailpulse
