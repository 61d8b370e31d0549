// Nameserver syntax for --resolver and probe.resolvers (probe/resolver.h).
#include "probe/resolver.h"

#include <gtest/gtest.h>

namespace mailpulse {
namespace {

std::string Parsed(const char* text) {
  StatusOr<SocketAddress> ns = ParseNameserver(text);
  return ns.ok() ? ns->ToString() : "error: " + ns.status().message();
}

TEST(ParseNameserverTest, AddressesWithAndWithoutPortDefaultingTo53) {
  EXPECT_EQ(Parsed("192.0.2.53"), "192.0.2.53:53");
  EXPECT_EQ(Parsed("127.0.0.1:5353"), "127.0.0.1:5353");
  EXPECT_EQ(Parsed("2001:db8::53"), "[2001:db8::53]:53");
  EXPECT_EQ(Parsed("[2001:db8::53]:5353"), "[2001:db8::53]:5353");
}

TEST(ParseNameserverTest, NamesAndGarbageAreRefused) {
  EXPECT_EQ(Parsed("ns1.example.org"), "error: 'ns1.example.org' is not an IP address (IP[:PORT])");
  EXPECT_NE(Parsed("127.0.0.1:notaport").rfind("error: ", 0), std::string::npos);
  EXPECT_NE(Parsed("").rfind("error: ", 0), std::string::npos);
  EXPECT_NE(Parsed("[::1").rfind("error: ", 0), std::string::npos);
}

}  // namespace
}  // namespace mailpulse
