#include "serving/tokenizer/gpt2_pretokenizer.h"

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::tokenizer {
namespace {

using ::testing::ElementsAre;

class Gpt2PreTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Gpt2PreTokenizer> created = Gpt2PreTokenizer::Create();
    ASSERT_TRUE(created.ok()) << created.status();
    pre_tokenizer_.emplace(*std::move(created));
  }

  std::vector<std::string> Split(std::string_view text) const {
    std::vector<std::string> pieces;
    for (std::string_view piece : pre_tokenizer_->Split(text)) pieces.emplace_back(piece);
    return pieces;
  }

  std::string SplitAndJoin(std::string_view text) const {
    std::string joined;
    for (std::string_view piece : pre_tokenizer_->Split(text)) joined += piece;
    return joined;
  }

  std::optional<Gpt2PreTokenizer> pre_tokenizer_;
};

// Expected pieces are those of the reference pattern in JavaScript (gpt-3-encoder's Encoder.js).
TEST_F(Gpt2PreTokenizerTest, SplitsLikeTheReferencePattern) {
  EXPECT_THAT(Split("Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Split("I'm here  now"), ElementsAre("I", "'m", " here", " ", " now"));
  EXPECT_THAT(Split("don't"), ElementsAre("don", "'t"));
  EXPECT_THAT(Split("a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Split("  x  "), ElementsAre(" ", " x", "  "));
  EXPECT_THAT(Split("x1.5 日本語!?"), ElementsAre("x", "1", ".", "5", " 日本語", "!?"));
  // No-break space (U+00A0) and ideographic space (U+3000) are whitespace, not letters.
  EXPECT_THAT(Split("\u00A0a\u3000b"), ElementsAre("\u00A0", "a", "\u3000", "b"));
}

TEST_F(Gpt2PreTokenizerTest, EmptyTextHasNoPieces) { EXPECT_TRUE(Split("").empty()); }

TEST_F(Gpt2PreTokenizerTest, BytesThatAreNotUtf8ArePiecesOfTheirOwn) {
  EXPECT_THAT(Split("ab\xFF\xFE cd"), ElementsAre("ab", "\xFF\xFE", " cd"));
  EXPECT_THAT(Split("\xC3"), ElementsAre("\xC3"));  // A truncated "é".
  EXPECT_THAT(Split("x \x80"), ElementsAre("x", " ", "\x80"));
}

TEST_F(Gpt2PreTokenizerTest, PiecesConcatenateToAnyInput) {
  std::mt19937 random(20240115);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(trial, '\0');
    for (char& c : text) c = static_cast<char>(byte(random));
    ASSERT_EQ(SplitAndJoin(text), text) << "trial " << trial;
  }
}

// Long runs of one class stay within PCRE2's limits (the splitter aborts if they are reached).
TEST_F(Gpt2PreTokenizerTest, LongRunsSplitWithinLimits) {
  constexpr size_t kLength = 4 << 20;
  for (const std::string& text :
       {std::string(kLength, ' '), std::string(kLength, 'a'), std::string(kLength, '7'),
        std::string(kLength, '!'), std::string(kLength, ' ') + "x", std::string(kLength, '\xFF')}) {
    ASSERT_EQ(SplitAndJoin(text), text);
  }
  EXPECT_THAT(Split(std::string(kLength, ' ') + "x"),
              ElementsAre(std::string(kLength - 1, ' '), " x"));
}

}  // namespace
}  // namespace troupe::serving::tokenizer
