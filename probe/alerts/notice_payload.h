// What a notice looks like at each kind of destination: the generic webhook's JSON document
// (also a command's stdin), the bodies Slack, Mattermost, Discord and Microsoft Teams incoming
// webhooks accept, a command's environment, and an e-mail message. docs/alerting.md shows
// each. Pure; thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "probe/alerts/alert_config.h"
#include "probe/alerts/alert_engine.h"

namespace mailpulse {

// "FIRING", "FIRING (repeat)", "FIRING (escalated)", "FLAPPING", "RESOLVED".
std::string NoticeStatusText(const Notice& n);
// One line: "[FIRING] critical smtp-down mx1: mx1: connect: Connection refused (3 failed ...)".
std::string NoticeLine(const Notice& n);

// The generic webhook document (docs/alerting.md): version, probe, status, kind, the alert.
std::string NoticeJson(const Notice& n, const std::string& probe_name);
// The body for a chat's incoming webhook: {"text"} (Slack, Mattermost), {"content"}
// (Discord), an Adaptive Card message (Teams workflows). For other kinds: NoticeJson.
std::string ChatPayload(NotifierKind kind, const Notice& n, const std::string& probe_name);

// MAILPULSE_ALERT_STATUS, _KIND, _ID, _RULE, _SUBJECT, _SEVERITY, _SUMMARY, _PROBE, _TIME.
std::vector<std::pair<std::string, std::string>> NoticeEnvironment(const Notice& n,
                                                                   const std::string& probe_name);

// A complete message (headers and a plain-text body) for e-mail notifiers.
std::string NoticeEmail(const Notice& n, const std::string& probe_name, const std::string& from,
                        const std::vector<std::string>& to, std::int64_t now_unix);

}  // namespace mailpulse
