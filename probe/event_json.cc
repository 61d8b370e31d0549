#include "probe/event_json.h"

#include <string>
#include <vector>

namespace mailpulse {
namespace {

nlohmann::json CountersJson(const proto::TrafficCounters& c) {
  return {{"connections", c.connections()},
          {"tls_connections", c.tls_connections()},
          {"messages", c.messages()},
          {"recipients", c.recipients()},
          {"bytes", c.bytes()},
          {"aborts", c.aborts()}};
}

nlohmann::json SnapshotJson(const proto::TrafficSnapshot& s) {
  nlohmann::json rejects = nlohmann::json::array();
  for (const auto& r : s.rejects()) {
    rejects.push_back({{"direction", r.direction()},
                       {"stage", r.stage()},
                       {"status", r.status()},
                       {"count", r.count()}});
  }
  return {{"source", s.source()},
          {"time_unix_us", s.time_unix_us()},
          {"start_unix_us", s.start_unix_us()},
          {"inbound", CountersJson(s.inbound())},
          {"outbound", CountersJson(s.outbound())},
          {"local", CountersJson(s.local())},
          {"rejects", rejects},
          {"events_dropped", s.events_dropped()}};
}

nlohmann::json ProbeResultJson(const proto::ProbeResult& p) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& t : p.phases()) {
    phases.push_back(
        {{"phase", t.phase()}, {"seconds", t.seconds()}, {"reply_code", t.reply_code()}});
  }
  // Text fields come from other peers: invalid UTF-8 is replaced rather than thrown on.
  return {{"source", p.source()},
          {"target", p.target()},
          {"time_unix_us", p.time_unix_us()},
          {"success", p.success()},
          {"result", p.result()},
          {"failed_phase", p.failed_phase()},
          {"reason", p.reason()},
          {"reply_code", p.reply_code()},
          {"enhanced_code", p.enhanced_code()},
          {"total_seconds", p.total_seconds()},
          {"phases", phases},
          {"address", p.address()},
          {"state", p.state()},
          {"summary", p.summary()},
          {"tls_version", p.tls_version()},
          {"tls_cipher", p.tls_cipher()},
          {"cert_not_after_unix", p.cert_not_after_unix()},
          {"cert_verified", p.cert_verified()},
          {"tls_resumed", p.tls_resumed()},
          {"queue_id", p.queue_id()},
          {"probe_id", p.probe_id()}};
}

nlohmann::json SpikeJson(const proto::OutboundSpike& s) {
  return {{"source", s.source()},
          {"started", s.started()},
          {"key_kind", s.key_kind()},
          {"key", s.key()},
          {"messages_per_minute", s.messages_per_minute()},
          {"recipients_per_minute", s.recipients_per_minute()},
          {"baseline_messages_per_minute", s.baseline_messages_per_minute()},
          {"baseline_recipients_per_minute", s.baseline_recipients_per_minute()},
          {"recipient_domains",
           std::vector<std::string>(s.recipient_domains().begin(), s.recipient_domains().end())},
          {"time_unix_us", s.time_unix_us()},
          {"since_unix_us", s.since_unix_us()},
          {"duration_seconds", s.duration_seconds()},
          {"messages", s.messages()}};
}

nlohmann::json QueueJson(const proto::QueueStatus& q) {
  nlohmann::json queues = nlohmann::json::object();
  for (const proto::QueueCount& c : q.queues()) {
    queues[c.queue()] = {{"messages", c.messages()},
                         {"oldest_age_seconds", c.oldest_age_seconds()}};
  }
  return {{"source", q.source()},
          {"mta", q.mta()},
          {"ok", q.ok()},
          {"error", q.error()},
          {"queues", queues},
          {"free_bytes", q.free_bytes()},
          {"free_inodes", q.free_inodes()},
          {"time_unix_us", q.time_unix_us()}};
}

}  // namespace

nlohmann::json EventJson(const std::string& peer, const proto::Event& event) {
  nlohmann::json j = {{"peer", peer}};
  if (event.has_traffic_snapshot()) {
    j["traffic_snapshot"] = SnapshotJson(event.traffic_snapshot());
  } else if (event.has_probe_result()) {
    j["probe_result"] = ProbeResultJson(event.probe_result());
  } else if (event.has_outbound_spike()) {
    j["outbound_spike"] = SpikeJson(event.outbound_spike());
  } else if (event.has_queue_status()) {
    j["queue_status"] = QueueJson(event.queue_status());
  } else {
    j["unknown"] = true;
  }
  return j;
}

}  // namespace mailpulse
