// Helpers shared by the DSN parser tests: the fixtures in dsn/ (see dsn_parser_test.cc for
// what each is modelled on), a message split the way the milter glue sees it, and small
// report bodies built around the fields a test is about.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "milter/core/dsn_parser.h"

namespace mailpulse::dsn_test {

inline std::string ReadFixture(const std::string& name) {
  std::ifstream in(std::string(MAILPULSE_SOURCE_DIR) + "/tests/unit/milter/dsn/" + name,
                   std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline const std::vector<std::string> kFixtures = {
    "postfix-failed-message.eml",
    "postfix-failed-headers.eml",
    "sendmail-failed-and-delivered.eml",
    "sendmail-delayed.eml",
    "exim-failed.eml",
    "exchange-failed.eml",
};

inline std::string WithLf(std::string s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i]);
  }
  return out;
}

inline std::string WithCrlf(const std::string& s) {
  std::string out;
  for (char c : WithLf(s)) {
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

// A whole message split as the milter sees it: the Content-Type header value (unfolded the
// way libmilter hands it over, line breaks kept) and the body after the empty line.
struct Message {
  std::string content_type;
  std::string body;
};

inline Message Split(const std::string& eml) {
  Message m;
  const std::string lf = WithLf(eml);
  const std::size_t end = lf.find("\n\n");
  EXPECT_NE(end, std::string::npos);
  const std::string sep = eml.find("\r\n") != std::string::npos ? "\r\n\r\n" : "\n\n";
  m.body = eml.substr(eml.find(sep) + sep.size());
  std::istringstream header(lf.substr(0, end));
  std::string line;
  bool in_content_type = false;
  while (std::getline(header, line)) {
    if (in_content_type && (line[0] == ' ' || line[0] == '\t')) {
      m.content_type += "\n" + line;
      continue;
    }
    in_content_type = line.rfind("Content-Type:", 0) == 0;
    if (in_content_type) m.content_type = line.substr(13);
  }
  return m;
}

inline StatusOr<DsnReport> ParseMessage(const std::string& eml) {
  const Message m = Split(eml);
  const std::optional<std::string> boundary = DsnBoundary(m.content_type);
  if (!boundary) return Status::Error("not a DSN: " + m.content_type);
  return ParseDsn(m.body, *boundary);
}

inline DsnReport ParseOk(const std::string& eml) {
  StatusOr<DsnReport> report = ParseMessage(eml);
  EXPECT_TRUE(report.ok()) << report.status().message();
  return report.ok() ? *report : DsnReport{};
}

inline std::string Describe(const DsnReport& r) {
  std::string out = "reporting_mta=" + r.reporting_mta + "\ntoken=" + r.returned_probe_token +
                    "\nomitted=" + std::to_string(r.omitted_recipients) + "\n";
  for (const DsnRecipient& p : r.recipients) {
    out += "rcpt=" + p.final_recipient + "|" + p.action + "|" + p.status + "|" + p.diagnostic_code +
           "|" + p.remote_mta + "\n";
  }
  return out;
}

// A report body around `status_fields`, with `returned` as a third part of `returned_type`.
inline std::string Report(const std::string& status_fields, const std::string& returned = "",
                          const std::string& returned_type = "text/rfc822-headers") {
  std::string body =
      "This is a MIME-encapsulated message.\n\n--b\nContent-Type: text/plain\n\nIt failed.\n"
      "--b\nContent-Type: message/delivery-status\n\n" +
      status_fields + "\n";
  if (!returned.empty()) body += "--b\nContent-Type: " + returned_type + "\n\n" + returned + "\n";
  return body + "--b--\n";
}

inline const std::string kRecipient =
    "Final-Recipient: rfc822; a@example.org\nAction: failed\n"
    "Status: 5.1.1\n";
inline const std::string kPerMessage = "Reporting-MTA: dns; mx.example.net\n\n";
inline const std::string kToken =
    "v=1; id=5f0c3a7e9b2d4c1a8e6f0b3d7a9c2e41; t=1764621555123456; src=probe-fra1; "
    "mac=ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=";

inline DsnReport ParseBodyOk(const std::string& body) {
  StatusOr<DsnReport> report = ParseDsn(body, "b");
  EXPECT_TRUE(report.ok()) << report.status().message();
  return report.ok() ? *report : DsnReport{};
}

inline std::string ParseError(const std::string& body) {
  StatusOr<DsnReport> report = ParseDsn(body, "b");
  EXPECT_FALSE(report.ok()) << Describe(report.ok() ? *report : DsnReport{});
  return report.ok() ? "" : report.status().message();
}

inline bool IsCleanUtf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80                 ? 1
                      : c >= 0xc2 && c <= 0xdf ? 2
                      : c >= 0xe0 && c <= 0xef ? 3
                      : c >= 0xf0 && c <= 0xf4 ? 4
                                               : 0;
    if (len == 0 || i + len > s.size() || c < 0x20 || c == 0x7f) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace mailpulse::dsn_test
