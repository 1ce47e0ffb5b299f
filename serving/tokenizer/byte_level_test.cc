#include "serving/tokenizer/byte_level.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace troupe::serving::tokenizer {
namespace {

TEST(ByteLevelTest, PrintableBytesStandForThemselves) {
  EXPECT_EQ(ByteLevelEncode("Hello!"), "Hello!");
  EXPECT_EQ(ByteLevelEncode("\xE9"), "é");  // Latin-1 0xE9 is U+00E9.
}

TEST(ByteLevelTest, OtherBytesBecomeTheCharactersFromU0100InByteOrder) {
  EXPECT_EQ(ByteLevelEncode(std::string(1, '\0')), "\u0100");
  EXPECT_EQ(ByteLevelEncode("\n"), "\u010A");  // "Ċ"
  EXPECT_EQ(ByteLevelEncode(" "), "\u0120");   // "Ġ"
  EXPECT_EQ(ByteLevelEncode("\x7F"), "\u0121");
  EXPECT_EQ(ByteLevelEncode("\xAD"), "\u0143");  // The last of the 68 substituted bytes.
  EXPECT_EQ(ByteLevelEncode(" world"), "\u0120world");
}

TEST(ByteLevelTest, EveryByteHasItsOwnCharacterAndDecodesBack) {
  std::set<std::string> characters;
  for (int byte = 0; byte < 256; ++byte) {
    const std::string bytes(1, static_cast<char>(byte));
    const std::string character = ByteLevelEncode(bytes);
    characters.insert(character);
    EXPECT_EQ(ByteLevelDecode(character), bytes) << "byte " << byte;
  }
  EXPECT_EQ(characters.size(), 256u);
}

TEST(ByteLevelTest, UnicodeTextRoundTripsThroughItsBytes) {
  const std::string text = "日本語 😀 naïve\r\n";
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(text)), text);
}

TEST(ByteLevelTest, CharactersOutsideTheAlphabetKeepTheirBytes) {
  EXPECT_EQ(ByteLevelDecode("<|im_start|>"), "<|im_start|>");
  EXPECT_EQ(ByteLevelDecode("日本 ▁x"), "日本 ▁x");
  EXPECT_EQ(ByteLevelDecode("\u0200"), "\u0200");  // Two-byte UTF-8, past the alphabet.
  EXPECT_EQ(ByteLevelDecode("\xC4"), "\xC4");      // A lead byte with nothing after it.
}

}  // namespace
}  // namespace troupe::serving::tokenizer
