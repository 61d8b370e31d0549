#include "shared/endpoint.h"

#include <gtest/gtest.h>

namespace mailpulse {
namespace {

TEST(EndpointTest, ParsesHostPort) {
  auto e = ParseEndpoint("127.0.0.1:9797");
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 9797);
  EXPECT_EQ(e->ToString(), "127.0.0.1:9797");
}

TEST(EndpointTest, ParsesBracketedIpv6) {
  auto e = ParseEndpoint("[::1]:25");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->ToString(), "[::1]:25");
}

TEST(EndpointTest, ParsesPostfixInetAndUnix) {
  auto inet = ParseEndpoint("inet:localhost:8891");
  ASSERT_TRUE(inet.ok());
  EXPECT_EQ(inet->host, "localhost");
  auto unix_ep = ParseEndpoint("unix:/run/mailpulse/events.sock");
  ASSERT_TRUE(unix_ep.ok());
  EXPECT_EQ(unix_ep->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(unix_ep->path, "/run/mailpulse/events.sock");
}

TEST(EndpointTest, ParsesTlsEndpointsAndWritesThemBack) {
  auto a = ParseEndpoint("tls:probe.example.org:9799");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->host, "probe.example.org");
  EXPECT_EQ(a->port, 9799);
  EXPECT_EQ(a->ToString(), "tls:probe.example.org:9799");
  auto b = ParseEndpoint("tls:[2001:db8::1]:9799");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ToString(), "tls:[2001:db8::1]:9799");
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:25")->tls);
  EXPECT_FALSE(ParseEndpoint("tls:nohost").ok());
}

TEST(EndpointTest, RejectsBadPortsAndShapes) {
  EXPECT_FALSE(ParseEndpoint("127.0.0.1").ok());
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:0").ok());
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:65536").ok());
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:http").ok());
  EXPECT_FALSE(ParseEndpoint("::1:25").ok());
  EXPECT_FALSE(ParseEndpoint("[::1]25").ok());
  EXPECT_FALSE(ParseEndpoint("unix:relative/path").ok());
}

TEST(EndpointTest, RejectsUnixPathLongerThanSunPath) {
  auto e = ParseEndpoint("unix:/" + std::string(200, 'a'));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("longer than"), std::string::npos);
}

TEST(MilterSocketSpecTest, ParsesLibmilterSpellings) {
  auto u = ParseMilterSocketSpec("unix:/run/mailpulse/milter.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, Endpoint::Kind::kUnix);
  auto l = ParseMilterSocketSpec("local:/tmp/m.sock");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->path, "/tmp/m.sock");
  auto i = ParseMilterSocketSpec("inet:8891@127.0.0.1");
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->port, 8891);
  EXPECT_EQ(i->host, "127.0.0.1");
  auto any = ParseMilterSocketSpec("inet:8891");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->host, "");
  auto v6 = ParseMilterSocketSpec("inet6:8891@[::1]");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
}

TEST(MilterSocketSpecTest, RejectsPostfixSpellingWithClearError) {
  auto e = ParseMilterSocketSpec("inet:127.0.0.1:8891");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bad port"), std::string::npos);
  EXPECT_FALSE(ParseMilterSocketSpec("tcp:8891").ok());
  EXPECT_FALSE(ParseMilterSocketSpec("/run/m.sock").ok());
}

}  // namespace
}  // namespace mailpulse
