// RunTroupeCommand runs `$TROUPE_BIN COMMAND FLAGS...` as a child process, as a user would, for
// the tests of troupe's commands (the test's BUILD rule sets TROUPE_BIN to //tools:troupe).
//
//   CommandOutcome run = RunTroupeCommand("plan", {"--model=opt-13b"});
//   EXPECT_EQ(run.exit_code, 0) << run.output;
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/child_process.h"

namespace troupe::testing {

struct CommandOutcome {
  int exit_code;
  std::string output;  // stdout and stderr, merged
};

inline CommandOutcome RunTroupeCommand(const std::string& command,
                                       const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {std::getenv("TROUPE_BIN"), command};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> child = tools::ChildProcess::Start(argv);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {-1, ""};
  absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(120));
  EXPECT_TRUE(code.ok()) << code.status();
  return {code.ok() ? *code : -1, (*child)->Output()};
}

// TestTempPath is `name` in the test's temporary directory.
inline std::string TestTempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

}  // namespace troupe::testing
