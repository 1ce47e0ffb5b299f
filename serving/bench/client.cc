#include "serving/bench/client.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <string_view>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr char kCompletionsPath[] = "/v1/completions";
// How much of an error response's body goes into a request's error message.
constexpr size_t kMaxErrorBodyBytes = 500;

bool ConsumePrefix(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) return false;
  text.remove_prefix(prefix.size());
  return true;
}

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string WithoutTrailingSlash(std::string url) {
  if (absl::EndsWith(url, "/")) url.pop_back();
  return url;
}

// StreamReader follows one response's server-sent events: when each text chunk came, the token
// count the server reports (stream_options.include_usage), an error event, the final [DONE].
class StreamReader {
 public:
  void Feed(const char* data, size_t length, Clock::time_point now) {
    buffer_.append(data, length);
    size_t end;
    while ((end = buffer_.find("\n\n")) != std::string::npos) {
      std::string event = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      Event(event, now);
    }
  }

  bool done() const { return done_; }
  const std::string& error() const { return error_; }
  const std::vector<Clock::time_point>& chunk_times() const { return chunk_times_; }
  std::optional<int> usage_tokens() const { return usage_tokens_; }

 private:
  void Event(const std::string& event, Clock::time_point now) {
    for (std::string_view line : SplitLines(event)) {
      if (!ConsumePrefix(line, "data:")) continue;  // comments, "event:" lines
      ConsumePrefix(line, " ");
      if (line == "[DONE]") {
        done_ = true;
        continue;
      }
      const json data = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (data.is_discarded() || !data.is_object()) {
        error_ = absl::StrCat("the server sent an event that is not a JSON object: ",
                              std::string(line.substr(0, kMaxErrorBodyBytes)));
        continue;
      }
      if (data.contains("error")) {
        error_ = absl::StrCat("the server reported an error mid-stream: ",
                              data["error"].value("message", data["error"].dump()));
        continue;
      }
      const auto usage = data.find("usage");
      if (usage != data.end() && usage->is_object() && usage->contains("completion_tokens") &&
          (*usage)["completion_tokens"].is_number_integer()) {
        usage_tokens_ = (*usage)["completion_tokens"].get<int>();
      }
      const auto choices = data.find("choices");
      if (choices == data.end() || !choices->is_array() || choices->empty()) continue;
      const json& choice = choices->front();
      const auto text = choice.find("text");
      if (text != choice.end() && text->is_string() && !text->get<std::string>().empty()) {
        chunk_times_.push_back(now);
      }
    }
  }

  static std::vector<std::string_view> SplitLines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
      const size_t end = text.find('\n');
      std::string_view line = text.substr(0, end);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      lines.push_back(line);
      if (end == std::string_view::npos) break;
      text.remove_prefix(end + 1);
    }
    return lines;
  }

  std::string buffer_;
  bool done_ = false;
  std::string error_;
  std::vector<Clock::time_point> chunk_times_;
  std::optional<int> usage_tokens_;
};

std::string ServerMessage(int status, const std::string& body) {
  const json error = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (error.is_object() && error.contains("error") && error["error"].is_object() &&
      error["error"].contains("message") && error["error"]["message"].is_string()) {
    return absl::StrCat("HTTP ", status, ": ", error["error"]["message"].get<std::string>());
  }
  return absl::StrCat("HTTP ", status, ": ", body.substr(0, kMaxErrorBodyBytes));
}

// Send runs one request and measures it; `start` is the run's time 0. `reached` (optional) is
// whether the server answered at all.
RequestResult Send(const BenchClientOptions& options, const workload::Request& request, int index,
                   Clock::time_point start, bool* reached = nullptr) {
  RequestResult result;
  result.index = index;
  result.arrival_s = request.arrival_s;
  result.input_tokens = request.input_tokens;
  result.output_tokens = request.output_tokens;
  json body = {
      {"prompt",
       PromptTokenIds(options.seed, index, request.input_tokens, options.prompt_token_id_limit)},
      {"max_tokens", request.output_tokens},
      {"ignore_eos", true},
      {"temperature", 0},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  if (!options.model.empty()) body["model"] = options.model;

  httplib::Client client(WithoutTrailingSlash(options.base_url));
  client.set_connection_timeout(absl::ToChronoMicroseconds(options.connect_timeout));
  client.set_read_timeout(absl::ToChronoMicroseconds(options.read_timeout));
  client.set_write_timeout(absl::ToChronoMicroseconds(options.read_timeout));
  if (!options.api_key.empty()) client.set_bearer_token_auth(options.api_key);

  httplib::Request http;
  http.method = "POST";
  http.path = kCompletionsPath;
  http.body = body.dump();
  http.set_header("Content-Type", "application/json");
  http.set_header("Accept", "text/event-stream");
  int status = 0;
  std::string error_body;
  StreamReader stream;
  http.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  http.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, std::min(length, kMaxErrorBodyBytes));
    } else {
      stream.Feed(data, length, Clock::now());
    }
    return true;
  };

  const Clock::time_point sent = Clock::now();
  result.sent_s = SecondsBetween(start, sent);
  httplib::Result response = client.send(http);
  const Clock::time_point ended = Clock::now();
  result.e2el_s = SecondsBetween(sent, ended);
  if (!response) {
    result.error = absl::StrCat("no response from ", options.base_url, " (",
                                httplib::to_string(response.error()), " error)");
    return result;
  }
  if (reached != nullptr) *reached = true;
  if (status != 200) {
    result.error = ServerMessage(status, error_body);
    return result;
  }
  const std::vector<Clock::time_point>& chunks = stream.chunk_times();
  result.generated_tokens = stream.usage_tokens().value_or(static_cast<int>(chunks.size()));
  if (!chunks.empty()) {
    result.ttft_s = SecondsBetween(sent, chunks.front());
    for (size_t i = 1; i < chunks.size(); ++i) {
      result.itl_s.push_back(SecondsBetween(chunks[i - 1], chunks[i]));
    }
    if (result.generated_tokens > 1) {
      result.tpot_s = SecondsBetween(chunks.front(), chunks.back()) / (result.generated_tokens - 1);
    }
  }
  if (!stream.error().empty()) {
    result.error = stream.error();
  } else if (!stream.done()) {
    result.error = "the stream ended before its [DONE] event";
  } else if (chunks.empty()) {
    result.error = "the stream carried no tokens";
  } else {
    result.success = true;
  }
  return result;
}

// ElasticPool runs tasks at once on idle threads, starting a new thread whenever none is idle:
// the pool grows to the run's peak of requests in flight and reuses threads after that.
class ElasticPool {
 public:
  ~ElasticPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closing_ = true;
    }
    ready_changed_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  void Run(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.push_back(std::move(task));
    if (ready_.size() > static_cast<size_t>(idle_)) {
      workers_.emplace_back([this] { Work(); });
    } else {
      ready_changed_.notify_one();
    }
  }

 private:
  void Work() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      ++idle_;
      ready_changed_.wait(lock, [&] { return !ready_.empty() || closing_; });
      --idle_;
      if (ready_.empty()) return;  // closing
      std::function<void()> task = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_changed_;
  std::deque<std::function<void()>> ready_;
  int idle_ = 0;
  bool closing_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

std::vector<int32_t> PromptTokenIds(uint64_t seed, int index, int length, int limit) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                         static_cast<uint32_t>(index)};
  std::mt19937_64 random(sequence);
  std::uniform_int_distribution<int32_t> token(0, limit - 1);
  std::vector<int32_t> ids(std::max(0, length));
  for (int32_t& id : ids) id = token(random);
  return ids;
}

absl::Status ValidateOptions(const BenchClientOptions& options) {
  static const std::regex kBaseUrl(R"(https?://[^:/?#\s]+(:\d+)?/?)");
  if (!std::regex_match(options.base_url, kBaseUrl)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base_url \"", options.base_url,
        "\" is not a server address: use scheme://host:port, e.g. http://127.0.0.1:8000 "
        "(no path: the client posts to /v1/completions)"));
  }
  if (options.max_concurrency < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_concurrency is ", options.max_concurrency,
                                                   ": use 0 (unlimited) or more"));
  }
  if (options.prompt_token_id_limit < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt_token_id_limit is ", options.prompt_token_id_limit, ": it must be at least 1"));
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.read_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("connect_timeout and read_timeout must be above 0");
  }
  return absl::OkStatus();
}

absl::Status CheckServer(const BenchClientOptions& options) {
  if (absl::Status valid = ValidateOptions(options); !valid.ok()) return valid;
  bool reached = false;
  const RequestResult probe =
      Send(options, {.input_tokens = 1, .output_tokens = 1}, 0, Clock::now(), &reached);
  if (probe.success) return absl::OkStatus();
  if (!reached) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the server: ", probe.error,
                     ". Start one (e.g. `troupe serve`) or point --base_url at a running one"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the server at ", options.base_url,
                   " failed the test request (1 prompt token, 1 output "
                   "token): ",
                   probe.error));
}

absl::StatusOr<BenchmarkRun> RunBenchmark(const std::vector<workload::Request>& requests,
                                          const BenchClientOptions& options) {
  if (absl::Status valid = ValidateOptions(options); !valid.ok()) return valid;
  BenchmarkRun run;
  run.results.resize(requests.size());
  std::mutex mutex;
  std::condition_variable changed;
  int in_flight = 0;
  size_t finished = 0;
  int failed = 0;

  const Clock::time_point start = Clock::now();
  std::thread progress;
  if (options.progress != nullptr && options.progress_every > absl::ZeroDuration()) {
    progress = std::thread([&] {
      std::unique_lock<std::mutex> lock(mutex);
      while (!changed.wait_for(lock, absl::ToChronoMilliseconds(options.progress_every),
                               [&] { return finished == requests.size(); })) {
        *options.progress << absl::StrFormat("bench: %d/%d requests done (%d failed), %.1f s\n",
                                             finished, requests.size(), failed,
                                             SecondsBetween(start, Clock::now()))
                          << std::flush;
      }
    });
  }
  {
    ElasticPool pool;
    for (size_t i = 0; i < requests.size(); ++i) {
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(requests[i].arrival_s)));
      std::unique_lock<std::mutex> lock(mutex);
      // Under max_concurrency a request waits for a slot (vLLM's semaphore): it is sent late.
      changed.wait(lock, [&] {
        return options.max_concurrency == 0 || in_flight < options.max_concurrency;
      });
      ++in_flight;
      lock.unlock();
      pool.Run([&, i] {
        RequestResult result = Send(options, requests[i], static_cast<int>(i), start);
        std::lock_guard<std::mutex> done(mutex);
        --in_flight;
        ++finished;
        failed += !result.success;
        run.results[i] = std::move(result);
        changed.notify_all();
      });
    }
  }  // the pool's destructor waits for every request
  run.duration_s = SecondsBetween(start, Clock::now());
  if (progress.joinable()) progress.join();
  return run;
}

}  // namespace troupe::serving::bench
