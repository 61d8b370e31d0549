// docs/config.md is generated from the key table; this test keeps the two in step.
// Regenerate with: MAILPULSE_UPDATE_DOCS=1 build/tests/shared_test --gtest_filter='ConfigDocs*'
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "shared/config.h"

namespace mailpulse {
namespace {

TEST(ConfigDocsTest, DocsConfigMdMatchesTheKeyTable) {
  const std::string path = std::string(MAILPULSE_SOURCE_DIR) + "/docs/config.md";
  const std::string expected = RenderConfigReference();
  if (std::getenv("MAILPULSE_UPDATE_DOCS") != nullptr) {
    std::ofstream(path) << expected;
  }
  std::ifstream in(path);
  std::stringstream actual;
  actual << in.rdbuf();
  EXPECT_EQ(actual.str(), expected) << path << " is stale; regenerate it (see this test's header)";
}

TEST(ConfigDocsTest, TheExampleConfigInContribParses) {
  const std::string path = std::string(MAILPULSE_SOURCE_DIR) + "/contrib/mailpulse.toml.example";
  StatusOr<Config> config = Config::Load(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->Entries("target").size(), 2u);
}

}  // namespace
}  // namespace mailpulse
