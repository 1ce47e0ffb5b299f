#include "tools/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace troupe::tools {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess::Start needs a program");
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The child: output to the pipe, default signal handling, a process group of its own.
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(pipe_fds[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, pipe_fds[0]));
}

ChildProcess::ChildProcess(pid_t pid, int output_fd) : pid_(pid), output_fd_(output_fd) {
  reader_ = std::thread([this] { ReadLoop(); });
}

ChildProcess::~ChildProcess() {
  if (!exit_code_) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(10)).IgnoreError();
  }
  if (reader_.joinable()) reader_.join();
  close(output_fd_);
}

void ChildProcess::ReadLoop() {
  char buffer[4096];
  while (true) {
    ssize_t n = read(output_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    absl::MutexLock lock(&mutex_);
    if (n <= 0) {
      eof_ = true;
      return;
    }
    output_.append(buffer, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(const std::string& needle,
                                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mutex_);
  size_t* from = nullptr;
  for (auto& [n, offset] : consumed_) {
    if (n == needle) from = &offset;
  }
  if (from == nullptr) {
    consumed_.emplace_back(needle, 0);
    from = &consumed_.back().second;
  }
  while (true) {
    size_t line_start = *from;
    while (true) {
      size_t end = output_.find('\n', line_start);
      if (end == std::string::npos) break;
      std::string line = output_.substr(line_start, end - line_start);
      line_start = end + 1;
      if (line.find(needle) != std::string::npos) {
        *from = line_start;
        return line;
      }
    }
    if (eof_ || absl::Now() >= deadline) {
      return absl::Status(eof_ ? absl::StatusCode::kNotFound : absl::StatusCode::kDeadlineExceeded,
                          absl::StrCat("process ", pid_, eof_ ? " ended" : " ran on for ",
                                       eof_ ? "" : absl::FormatDuration(timeout),
                                       " without printing \"", needle, "\"; its output:\n",
                                       output_));
    }
    mutex_.Unlock();
    absl::SleepFor(absl::Milliseconds(10));
    mutex_.Lock();
  }
}

void ChildProcess::Signal(int signal_number) { kill(pid_, signal_number); }

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  if (exit_code_) return *exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return *exit_code_;
    }
    if (done < 0) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still runs after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string ChildProcess::Output() const {
  absl::MutexLock lock(&mutex_);
  return output_;
}

std::string TroupeBinary() {
  const char* path = std::getenv("TROUPE_BIN");
  return path != nullptr ? path : "tools/troupe";
}

}  // namespace troupe::tools
