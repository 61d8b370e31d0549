// The one table of configuration keys for both programs. Adding a key here adds it to the
// parser, --check-config, --dump-config and docs/config.md.
// Neither program reloads its configuration yet, so no key is marked reloadable.
#include "shared/config.h"

namespace mailpulse {

const std::vector<ConfigKey>& ConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"log.target", ConfigType::kString, R"("syslog")", false,
       "Where logs go: \"syslog\" (mail facility) or \"stderr\". --foreground forces stderr."},
      {"log.level", ConfigType::kString, R"("info")", false,
       "Lowest level logged: debug, info, warning or error."},

      {"milter.socket", ConfigType::kString, R"("unix:/run/mailpulse/milter.sock")", false,
       "Where the milter listens, in libmilter syntax: unix:/path or inet:PORT@HOST "
       "(inet6:PORT@HOST). Postfix names the same socket unix:/path or inet:HOST:PORT."},
      {"milter.socket_group", ConfigType::kString, R"("postfix")", false,
       "Group that owns the unix socket (mode 0660), so the MTA can connect. Empty: the "
       "group of milter.user."},
      {"milter.user", ConfigType::kString, R"("mailpulse")", false,
       "When started as root, switch to this user (and its group) after binding sockets."},
      {"milter.metrics_listen", ConfigType::kString, R"("127.0.0.1:9797")", false,
       "ADDRESS:PORT for the HTTP /metrics endpoint ([::1]:PORT for IPv6). Empty disables it."},
      {"milter.trusted_networks", ConfigType::kStringList, R"(["127.0.0.0/8", "::1/128"])", false,
       "Client networks (CIDR) whose mail counts as outbound, like Postfix's mynetworks. "
       "SASL-authenticated clients are outbound from anywhere."},
      {"milter.hop_name", ConfigType::kString, R"("")", false,
       "Name of this hop in events and stamps. Empty: the host name."},
      {"milter.event_socket", ConfigType::kString, R"("")", false,
       "The probe's shared event socket (unix:/path or inet:HOST:PORT). Empty: send no events."},
      {"milter.snapshot_interval", ConfigType::kDuration, "5", false,
       "How often a traffic snapshot is sent to the event socket."},
      {"milter.event_queue_size", ConfigType::kInt, "256", false,
       "Events held while the event socket is unreachable; older ones are dropped and counted."},
      {"milter.timeout", ConfigType::kDuration, "30", false,
       "libmilter's I/O timeout towards the MTA."},

      {"probe.metrics_listen", ConfigType::kString, R"("127.0.0.1:9798")", false,
       "ADDRESS:PORT for the probe's HTTP /metrics endpoint. Empty disables it."},
      {"probe.event_socket", ConfigType::kString, R"("unix:/run/mailpulse/events.sock")", false,
       "The shared event socket the probe owns and the milters report to."},
  };
  return keys;
}

}  // namespace mailpulse
