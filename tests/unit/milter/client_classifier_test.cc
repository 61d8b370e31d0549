#include "milter/core/client_classifier.h"

#include <gtest/gtest.h>

namespace mailpulse {
namespace {

ClientEndpoint At(const char* ip, std::uint16_t port = 40000) {
  return ClientEndpoint{IpAddress::Parse(ip), port};
}

ClientClassifier Make(std::vector<std::string> nets) {
  auto c = ClientClassifier::Create(nets);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return *c;
}

TEST(IpNetworkTest, Ipv4PrefixMatchesOnlyInsideTheNetwork) {
  auto n = IpNetwork::Parse("10.1.0.0/16");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->Contains(*IpAddress::Parse("10.1.255.7")));
  EXPECT_FALSE(n->Contains(*IpAddress::Parse("10.2.0.1")));
}

TEST(IpNetworkTest, OddPrefixLengthMasksPartialByte) {
  auto n = IpNetwork::Parse("192.168.1.128/25");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->Contains(*IpAddress::Parse("192.168.1.200")));
  EXPECT_FALSE(n->Contains(*IpAddress::Parse("192.168.1.127")));
}

TEST(IpNetworkTest, Ipv4NetworkMatchesIpv4MappedIpv6Client) {
  auto n = IpNetwork::Parse("192.0.2.0/24");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->Contains(*IpAddress::Parse("::ffff:192.0.2.9")));
}

TEST(IpNetworkTest, Ipv6Prefix) {
  auto n = IpNetwork::Parse("2001:db8::/32");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->Contains(*IpAddress::Parse("[2001:db8:1::5]")));
  EXPECT_FALSE(n->Contains(*IpAddress::Parse("2001:db9::5")));
}

TEST(IpNetworkTest, BareAddressIsASingleHost) {
  auto n = IpNetwork::Parse("127.0.0.2");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->Contains(*IpAddress::Parse("127.0.0.2")));
  EXPECT_FALSE(n->Contains(*IpAddress::Parse("127.0.0.3")));
}

TEST(IpNetworkTest, RejectsMalformedNetworks) {
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "::1/129", "10.0.0.0/", "10.0.0.0/x", "",
                          "example.com/8", "10.0.0.0/-1"}) {
    EXPECT_FALSE(IpNetwork::Parse(bad).ok()) << bad;
  }
}

TEST(ClientClassifierTest, CreateNamesTheBadEntry) {
  auto c = ClientClassifier::Create({"127.0.0.0/8", "10.0.0.0/33"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("10.0.0.0/33"), std::string::npos);
}

TEST(ClientClassifierTest, TrustedNetworkIsOutboundOthersInbound) {
  ClientClassifier c = Make({"192.0.2.0/24"});
  EXPECT_EQ(c.Classify(At("192.0.2.10")), Direction::kOutbound);
  EXPECT_EQ(c.Classify(At("198.51.100.1")), Direction::kInbound);
}

TEST(ClientClassifierTest, LoopbackWithPortZeroIsLocalSubmission) {
  ClientClassifier c = Make({});
  EXPECT_EQ(c.Classify(At("127.0.0.1", 0)), Direction::kLocal);
  EXPECT_EQ(c.Classify(At("::1", 0)), Direction::kLocal);
  EXPECT_EQ(c.Classify(At("127.0.0.1", 51234)), Direction::kInbound);
  EXPECT_EQ(c.Classify(At("192.0.2.1", 0)), Direction::kInbound);
}

TEST(ClientClassifierTest, UnknownAddressIsInbound) {
  ClientClassifier c = Make({"0.0.0.0/0"});
  EXPECT_EQ(c.Classify(ClientEndpoint{}), Direction::kInbound);
}

TEST(IpAddressTest, RoundTripsToText) {
  EXPECT_EQ(IpAddress::Parse("192.0.2.1")->ToString(), "192.0.2.1");
  EXPECT_EQ(IpAddress::Parse("IPv6:2001:db8::1")->ToString(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::Parse("not-an-ip").has_value());
}

}  // namespace
}  // namespace mailpulse
