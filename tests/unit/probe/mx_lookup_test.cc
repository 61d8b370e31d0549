// The c-ares glue of the MX lookup (probe/mx_lookup.h) against a nameserver that never
// answers: a UDP socket of the test's own on 127.0.0.1. Cancel-on-destroy, shutdown of the
// channel, and c-ares's timeout driven by the libevent timer. No real DNS is asked.
#include "probe/mx_lookup.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>

namespace mailpulse {
namespace {

class SilentNameserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_.reset(event_base_new());
    ASSERT_TRUE(base_);
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
    socklen_t len = sizeof address_.storage;
    ASSERT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address_.storage), &len), 0);
    address_.length = len;
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
  }

  std::unique_ptr<AresChannel> NewChannel(int try_timeout_ms) {
    auto channel = AresChannel::Create(base_.get(), {address_}, try_timeout_ms, 1);
    EXPECT_TRUE(channel.ok()) << channel.status().message();
    return channel.ok() ? std::move(*channel) : nullptr;
  }

  // Runs the loop until `done` or for at most `seconds`.
  void RunUntil(const std::function<bool()>& done, double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
      usleep(1000);
    }
  }

  // Whether the query reached the nameserver (it is then in flight).
  bool QueryArrived() {
    char buf[512];
    return recv(fd_, buf, sizeof buf, MSG_DONTWAIT) > 0;
  }

  EventBasePtr base_;
  int fd_ = -1;
  SocketAddress address_;
};

TEST_F(SilentNameserverTest, DestroyingAPendingLookupMeansItsCallbackNeverRuns) {
  std::unique_ptr<AresChannel> channel = NewChannel(60000);
  ASSERT_TRUE(channel);
  bool called = false;
  auto lookup = std::make_unique<MxLookup>(channel.get(), "example.org",
                                           [&called](StatusOr<MxHosts>) { called = true; });
  lookup->Start();
  bool arrived = false;
  RunUntil([&] { return arrived = arrived || QueryArrived(); }, 5);
  ASSERT_TRUE(arrived) << "the MX query never reached the nameserver";
  lookup.reset();
  channel.reset();  // ARES_EDESTRUCTION for the orphaned query: freed, nobody told
  EXPECT_FALSE(called);
}

TEST_F(SilentNameserverTest, ChannelShutdownTellsALookupStillWaiting) {
  std::unique_ptr<AresChannel> channel = NewChannel(60000);
  ASSERT_TRUE(channel);
  std::optional<StatusOr<MxHosts>> answer;
  MxLookup lookup(channel.get(), "example.org",
                  [&answer](StatusOr<MxHosts> a) { answer = std::move(a); });
  lookup.Start();
  RunUntil([&] { return QueryArrived(); }, 5);
  channel.reset();
  ASSERT_TRUE(answer.has_value());
  ASSERT_FALSE(answer->ok());
  EXPECT_EQ(answer->status().message().rfind("example.org: resolver shut down (", 0), 0u)
      << answer->status().message();
}

TEST_F(SilentNameserverTest, NoAnswerEndsWithCaresTimeoutThroughTheLoopTimer) {
  std::unique_ptr<AresChannel> channel = NewChannel(50);
  ASSERT_TRUE(channel);
  std::optional<StatusOr<MxHosts>> answer;
  MxLookup lookup(channel.get(), "example.org",
                  [&answer](StatusOr<MxHosts> a) { answer = std::move(a); });
  lookup.Start();
  RunUntil([&] { return answer.has_value(); }, 5);
  ASSERT_TRUE(answer.has_value()) << "c-ares's timeout never fired";
  ASSERT_FALSE(answer->ok());
  EXPECT_EQ(answer->status().message(), "example.org: Timeout while contacting DNS servers");
}

}  // namespace
}  // namespace mailpulse
