// ChildProcess: start a program, read its merged stdout/stderr line by line, signal it, reap it.
//
// Multi-process tests and benchmarks start real `troupe node` processes with this and watch their output:
//
//   absl::StatusOr<std::unique_ptr<ChildProcess>> node = ChildProcess::Start(
//       {TroupeBinary(), "node", "--config=" + path, "--node=n0"});
//   absl::StatusOr<std::string> line = (*node)->WaitForLine("listening on", absl::Seconds(30));
//   (*node)->Signal(SIGKILL);
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace troupe::tools {

class ChildProcess {
 public:
  // Start runs argv[0] with the given arguments; argv[0] is looked up on PATH if it has no '/'.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv);
  ~ChildProcess();  // SIGKILLs the process if it still runs, and reaps it.

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // WaitForLine returns the first output line (from the start) containing `needle` that has not
  // been returned before by a call with the same needle. It fails if the process exits or
  // `timeout` passes first; the error carries the output so far.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle, absl::Duration timeout);

  void Signal(int signal_number);

  // Wait reaps the process and returns its exit code (128 + N if killed by signal N).
  absl::StatusOr<int> Wait(absl::Duration timeout);

  std::string Output() const;
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int output_fd);
  void ReadLoop();

  pid_t pid_;
  int output_fd_;
  std::thread reader_;
  mutable absl::Mutex mutex_;
  std::string output_ ABSL_GUARDED_BY(mutex_);
  bool eof_ ABSL_GUARDED_BY(mutex_) = false;
  std::vector<std::pair<std::string, size_t>> consumed_ ABSL_GUARDED_BY(mutex_);
  std::optional<int> exit_code_;
};

// TroupeBinary is the path of the `troupe` binary under test (from $TROUPE_BIN).
std::string TroupeBinary();

}  // namespace troupe::tools
