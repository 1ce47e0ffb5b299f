// Tokenizer on small hand-made files: loading both formats, encoding, decoding, and every error
// a bad file can cause. gpt2_tokenizer_test checks ids against GPT-2's real vocabulary.
#include "serving/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/tokenizer/byte_level.h"

namespace troupe::serving::tokenizer {
namespace {

using ::nlohmann::json;
using ::std::string_literals::operator""s;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Ids of the hand-made vocabulary: bytes are 0-255 in byte order, then the merged tokens.
constexpr int32_t kHe = 256;
constexpr int32_t kLl = 257;
constexpr int32_t kHell = 258;
constexpr int32_t kHello = 259;
constexpr int32_t kSpaceW = 260;
constexpr int32_t kAa = 261;
constexpr int32_t kEndOfText = 262;
constexpr int32_t kEndPrefix = 263;  // "<|end", an added token that is a prefix of another.

json SmallVocab() {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) {
    vocab[ByteLevelEncode(std::string(1, static_cast<char>(byte)))] = byte;
  }
  vocab["he"] = kHe;
  vocab["ll"] = kLl;
  vocab["hell"] = kHell;
  vocab["hello"] = kHello;
  vocab["\u0120w"] = kSpaceW;
  vocab["aa"] = kAa;
  return vocab;
}

// SmallTokenizerJson is a complete GPT-2-style tokenizer.json, merges in both spellings.
json SmallTokenizerJson() {
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", kEndOfText},
         {"content", "<|endoftext|>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}},
        {{"id", kEndPrefix}, {"content", "<|end"}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", SmallVocab()},
        {"merges", {"h e", {"l", "l"}, "he ll", {"hell", "o"}, "\u0120 w", "a a"}}}},
  };
}

constexpr char kSmallMergesText[] = "#version: 0.2\nh e\nl l\nhe ll\nhell o\n\u0120 w\na a\n";

class TokenizerTest : public ::testing::Test {
 protected:
  // Path returns a fresh path in the test's temporary directory.
  std::string Path(const std::string& name) {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    return ::testing::TempDir() + test->name() + "_" + name;
  }

  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = Path(name);
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  absl::StatusOr<Tokenizer> LoadJson(const json& tokenizer_json) {
    return Tokenizer::FromHuggingFaceJson(Write("tokenizer.json", tokenizer_json.dump()));
  }

  absl::StatusOr<Tokenizer> LoadVocabAndMerges(const json& vocab, const std::string& merges) {
    return Tokenizer::FromVocabAndMerges(Write("vocab.json", vocab.dump()),
                                         Write("merges.txt", merges));
  }

  // LoadError loads a broken tokenizer.json and returns the error message.
  std::string LoadError(const json& tokenizer_json) {
    absl::StatusOr<Tokenizer> tokenizer = LoadJson(tokenizer_json);
    EXPECT_FALSE(tokenizer.ok());
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(tokenizer.status().message());
  }

  std::string LoadError(const json& vocab, const std::string& merges) {
    absl::StatusOr<Tokenizer> tokenizer = LoadVocabAndMerges(vocab, merges);
    EXPECT_FALSE(tokenizer.ok());
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(tokenizer.status().message());
  }
};

// --- Encoding and decoding -----------------------------------------------------------------------

TEST_F(TokenizerTest, HuggingFaceJsonMergesByRank) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello"), ElementsAre(kHello));
  // " world": only "Ġ w" applies; "hello hello" shows a space does not join "hello".
  EXPECT_THAT(tokenizer->Encode("hello world"), ElementsAre(kHello, kSpaceW, 'o', 'r', 'l', 'd'));
  EXPECT_THAT(tokenizer->Encode("hello hello"), ElementsAre(kHello, ' ', kHello));
  EXPECT_THAT(tokenizer->Encode("help"), ElementsAre(kHe, 'l', 'p'));
  EXPECT_TRUE(tokenizer->Encode("").empty());
}

TEST_F(TokenizerTest, MergesEveryOccurrenceLeftToRight) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("aaa"), ElementsAre(kAa, 'a'));
  EXPECT_THAT(tokenizer->Encode("aaaa"), ElementsAre(kAa, kAa));
  EXPECT_THAT(tokenizer->Encode("aaaaa"), ElementsAre(kAa, kAa, 'a'));
}

TEST_F(TokenizerTest, AddedTokensInTheTextBecomeTheirIds) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello<|endoftext|>hello"),
              ElementsAre(kHello, kEndOfText, kHello));
  EXPECT_THAT(tokenizer->Encode("<|endoftext|><|endoftext|>"), ElementsAre(kEndOfText, kEndOfText));
  // At one position the longest added token wins; elsewhere the leftmost.
  EXPECT_THAT(tokenizer->Encode("<|end|>"), ElementsAre(kEndPrefix, '|', '>'));
  EXPECT_THAT(tokenizer->Encode("a<|end<|endoftext|>"), ElementsAre('a', kEndPrefix, kEndOfText));
  // The text around an added token is pre-tokenized on its own: " hello" keeps its space.
  EXPECT_THAT(tokenizer->Encode("<|endoftext|> hello"), ElementsAre(kEndOfText, ' ', kHello));
}

TEST_F(TokenizerTest, EncodeOrdinaryTreatsAddedTokensAsText) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<int32_t> ids = tokenizer->EncodeOrdinary("x<|endoftext|>");
  EXPECT_THAT(ids,
              ElementsAre('x', '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>'));
  EXPECT_THAT(ids, Not(Contains(kEndOfText)));
}

TEST_F(TokenizerTest, DecodeReturnsTheExactBytes) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<std::string> texts = {"hello world", "  spaced\n\n out  ",
                                          "<|endoftext|>hello<|end", "日本語 😀",
                                          "not UTF-8: \xFF\xC3 and a NUL \0 byte"s};
  for (const std::string& text : texts) {
    absl::StatusOr<std::string> decoded = tokenizer->Decode(tokenizer->Encode(text));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  for (int32_t id : {264, -1}) {
    const std::vector<int32_t> ids = {kHello, id};
    absl::StatusOr<std::string> decoded = tokenizer->Decode(ids);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(decoded.status().message(), HasSubstr(absl::StrCat("token id ", id)));
    EXPECT_THAT(decoded.status().message(), HasSubstr("vocab_size 264"));
  }
}

TEST_F(TokenizerTest, TokenIdsVocabSizeAndAddedTokens) {
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(SmallTokenizerJson());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->vocab_size(), 264);
  EXPECT_EQ(tokenizer->TokenId("hello"), kHello);
  EXPECT_EQ(tokenizer->TokenId("\u0120w"), kSpaceW);
  EXPECT_EQ(tokenizer->TokenId("<|endoftext|>"), kEndOfText);
  EXPECT_EQ(tokenizer->TokenId("world"), std::nullopt);
  ASSERT_EQ(tokenizer->added_tokens().size(), 2u);
  EXPECT_EQ(tokenizer->added_tokens()[0].content, "<|endoftext|>");
  EXPECT_EQ(tokenizer->added_tokens()[0].id, kEndOfText);
}

TEST_F(TokenizerTest, MinimalHuggingFaceJsonIsEnough) {
  json minimal = {{"pre_tokenizer", {{"type", "ByteLevel"}}},
                  {"model", {{"vocab", SmallVocab()}, {"merges", {"h e"}}}}};
  absl::StatusOr<Tokenizer> tokenizer = LoadJson(minimal);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hel"), ElementsAre(kHe, 'l'));
  EXPECT_TRUE(tokenizer->added_tokens().empty());
}

TEST_F(TokenizerTest, VocabAndMergesFiles) {
  json vocab = SmallVocab();
  vocab["<|endoftext|>"] = kEndOfText;
  absl::StatusOr<Tokenizer> tokenizer = LoadVocabAndMerges(vocab, kSmallMergesText);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello world"), ElementsAre(kHello, kSpaceW, 'o', 'r', 'l', 'd'));
  // As transformers' GPT2Tokenizer, "<|endoftext|>" in the vocabulary is an added token.
  EXPECT_THAT(tokenizer->Encode("a<|endoftext|>"), ElementsAre('a', kEndOfText));
  EXPECT_EQ(tokenizer->vocab_size(), kEndOfText + 1);
}

TEST_F(TokenizerTest, OpenTokenizerFindsTheFilesOfADirectory) {
  json vocab = SmallVocab();
  vocab["<|endoftext|>"] = kEndOfText;
  const std::string directory = Path("files");
  ASSERT_EQ(mkdir(directory.c_str(), 0755), 0);
  std::ofstream(directory + "/vocab.json") << vocab.dump();
  std::ofstream(directory + "/merges.txt") << kSmallMergesText;
  absl::StatusOr<Tokenizer> tokenizer = OpenTokenizer(directory);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello world"), ElementsAre(kHello, kSpaceW, 'o', 'r', 'l', 'd'));
  absl::StatusOr<Tokenizer> missing = OpenTokenizer(directory + "/nowhere");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(directory + "/nowhere"));
  EXPECT_THAT(missing.status().message(), HasSubstr("vocab.json + merges.txt"));
}

TEST_F(TokenizerTest, MergesTextWithWindowsLineEndingsAndNoVersionLine) {
  absl::StatusOr<Tokenizer> tokenizer =
      LoadVocabAndMerges(SmallVocab(), "h e\r\nl l\r\nhe ll\r\nhell o");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello"), ElementsAre(kHello));
}

// --- Files that cannot be read ------------------------------------------------------------------

TEST_F(TokenizerTest, MissingFileSaysWhichAndHowToGetIt) {
  const std::string path = Path("absent.json");
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromHuggingFaceJson(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(path));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("tools/setup.sh"));

  const std::string merges = Write("merges.txt", kSmallMergesText);
  tokenizer = Tokenizer::FromVocabAndMerges(path, merges);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(path));
  const std::string vocab = Write("vocab.json", SmallVocab().dump());
  tokenizer = Tokenizer::FromVocabAndMerges(vocab, path);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(path));
}

TEST_F(TokenizerTest, DirectoryIsNotAFile) {
  const std::string path = Path("directory");
  ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromHuggingFaceJson(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("cannot read tokenizer file " + path));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("Is a directory"));
}

TEST_F(TokenizerTest, MalformedJsonNamesTheFile) {
  const std::string path = Write("tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 1,}}");
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromHuggingFaceJson(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(path + " is not valid JSON"));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("line 1"));

  const std::string vocab = Write("vocab.json", "");
  const std::string merges = Write("merges.txt", kSmallMergesText);
  tokenizer = Tokenizer::FromVocabAndMerges(vocab, merges);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(vocab + " is not valid JSON"));
}

// --- Malformed tokenizer.json -------------------------------------------------------------------

TEST_F(TokenizerTest, JsonThatIsNotATokenizer) {
  EXPECT_THAT(LoadError(json::array()), HasSubstr("holds a JSON array, not a tokenizer object"));
  json no_model = SmallTokenizerJson();
  no_model.erase("model");
  EXPECT_THAT(LoadError(no_model), HasSubstr("\"model\" is missing or not an object"));
  json no_vocab = SmallTokenizerJson();
  no_vocab["model"].erase("vocab");
  EXPECT_THAT(LoadError(no_vocab), HasSubstr("model.vocab is missing or not an object"));
  json no_merges = SmallTokenizerJson();
  no_merges["model"]["merges"] = "h e";
  EXPECT_THAT(LoadError(no_merges), HasSubstr("model.merges is missing or not an array"));
}

TEST_F(TokenizerTest, SettingsOfOtherTokenizersAreRejected) {
  struct Case {
    const char* pointer;
    json value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"/normalizer", {{"type", "NFC"}}, "normalizer is {\"type\":\"NFC\"}"},
      {"/pre_tokenizer", nullptr, "pre_tokenizer.type is missing"},
      {"/pre_tokenizer/type", "Metaspace", "pre_tokenizer.type is \"Metaspace\""},
      {"/pre_tokenizer/add_prefix_space", true, "pre_tokenizer.add_prefix_space is true"},
      {"/pre_tokenizer/use_regex", false, "pre_tokenizer.use_regex is false"},
      {"/model/type", "WordPiece", "model.type is \"WordPiece\""},
      {"/model/dropout", 0.1, "model.dropout is 0.1"},
      {"/model/continuing_subword_prefix", "##", "model.continuing_subword_prefix is \"##\""},
      {"/model/end_of_word_suffix", "</w>", "model.end_of_word_suffix is \"</w>\""},
      {"/model/ignore_merges", true, "model.ignore_merges is true"},
  };
  for (const Case& c : cases) {
    json tokenizer_json = SmallTokenizerJson();
    tokenizer_json[json::json_pointer(c.pointer)] = c.value;
    const std::string message = LoadError(tokenizer_json);
    EXPECT_THAT(message, HasSubstr(c.message)) << c.pointer;
    EXPECT_THAT(message, HasSubstr("implements GPT-2's byte-level BPE only")) << c.pointer;
  }
}

TEST_F(TokenizerTest, MalformedMergeEntries) {
  for (const json& merge : {json("hello"), json("a b c"), json(" a"), json({"h"}),
                            json({"h", "e", "l"}), json({"h", 5}), json(7)}) {
    json tokenizer_json = SmallTokenizerJson();
    tokenizer_json["model"]["merges"][2] = merge;
    const std::string message = LoadError(tokenizer_json);
    EXPECT_THAT(message,
                HasSubstr("model.merges[2] is " + merge.dump() + ", not a merge of two tokens"));
  }
}

TEST_F(TokenizerTest, MalformedAddedTokens) {
  json not_array = SmallTokenizerJson();
  not_array["added_tokens"] = {{"id", 5}};
  EXPECT_THAT(LoadError(not_array), HasSubstr("added_tokens is object, not an array"));

  json no_id = SmallTokenizerJson();
  no_id["added_tokens"][1].erase("id");
  EXPECT_THAT(LoadError(no_id), HasSubstr("added_tokens[1] is {\"content\":\"<|end\"}; an added "
                                          "token needs \"id\" (an integer) and \"content\""));

  json stripped = SmallTokenizerJson();
  stripped["added_tokens"][0]["lstrip"] = true;
  EXPECT_THAT(LoadError(stripped),
              HasSubstr("added_tokens[0] (\"<|endoftext|>\") sets lstrip; this tokenizer matches "
                        "added tokens exactly as written: set lstrip to false"));

  json negative = SmallTokenizerJson();
  negative["added_tokens"][1]["id"] = -5;
  EXPECT_THAT(LoadError(negative), HasSubstr("added_tokens[1] (\"<|end\") has id -5"));

  json empty = SmallTokenizerJson();
  empty["added_tokens"][1]["content"] = "";
  EXPECT_THAT(LoadError(empty), HasSubstr("added token 263 has empty content"));

  json other_id = SmallTokenizerJson();
  other_id["added_tokens"][1]["content"] = "hello";
  EXPECT_THAT(LoadError(other_id),
              HasSubstr("added token \"hello\" has id 263 but the vocabulary gives it id 259"));

  json taken_id = SmallTokenizerJson();
  taken_id["added_tokens"][1]["id"] = kHello;
  EXPECT_THAT(LoadError(taken_id),
              HasSubstr("added token \"<|end\" has id 259, which is already token \"hello\""));
}

// --- Vocabularies and merges that do not fit
// ------------------------------------------------------

TEST_F(TokenizerTest, VocabularyIdsMustBeDistinctNonNegativeIntegers) {
  const std::vector<std::pair<json, std::string>> cases = {
      {"5", "token \"hello\" has id \"5\"; ids must be integers from 0 to 2147483647"},
      {-1, "token \"hello\" has id -1"},
      {int64_t{1} << 31, "token \"hello\" has id 2147483648"},
      {kHe, "both have id 256; each id must stand for one token"},
  };
  for (const auto& [id, expected] : cases) {
    json vocab = SmallVocab();
    vocab["hello"] = id;
    EXPECT_THAT(LoadError(vocab, kSmallMergesText), HasSubstr(expected));
  }
  EXPECT_THAT(LoadError(json::array(), kSmallMergesText),
              HasSubstr("holds a JSON array, not a vocabulary"));
}

TEST_F(TokenizerTest, VocabularyMustHaveEveryByte) {
  json vocab = SmallVocab();
  vocab.erase("\u010A");  // The newline.
  EXPECT_THAT(LoadError(vocab, kSmallMergesText),
              HasSubstr("no token for byte 0x0a (spelled \"\u010A\"); a byte-level BPE vocabulary "
                        "has a token for each of the 256 bytes"));
}

TEST_F(TokenizerTest, MergesLineThatIsNotTwoTokensIsNamed) {
  EXPECT_THAT(LoadError(SmallVocab(), "#version: 0.2\nh e\nhel\n"),
              HasSubstr("merges.txt: line 3 is \"hel\", not a merge of two tokens"));
  EXPECT_THAT(LoadError(SmallVocab(), "h e\nl l r\n"),
              HasSubstr("merges.txt: line 2 is \"l l r\", not a merge of two tokens"));
  EXPECT_THAT(LoadError(SmallVocab(), "h e\n\nl l\n"), HasSubstr("line 2 is \"\""));
}

TEST_F(TokenizerTest, MergesMustStayInsideTheVocabulary) {
  EXPECT_THAT(LoadError(SmallVocab(), "h e\nx y\n"),
              HasSubstr("line 2: merge \"x y\" makes \"xy\", which is not in the vocabulary"));
  EXPECT_THAT(LoadError(SmallVocab(), "h e\nhe zz\n"),
              HasSubstr("line 2: merge \"he zz\" uses \"zz\", which is not in the vocabulary"));
  json tokenizer_json = SmallTokenizerJson();
  tokenizer_json["model"]["merges"][1] = {"l", "o"};
  EXPECT_THAT(LoadError(tokenizer_json),
              HasSubstr("model.merges[1]: merge \"l o\" makes \"lo\", which is not in the "
                        "vocabulary"));
}

TEST_F(TokenizerTest, RepeatedMergeIsNamed) {
  EXPECT_THAT(LoadError(SmallVocab(), "#version: 0.2\nh e\nl l\nh e\n"),
              HasSubstr("line 4: merge \"h e\" repeats line 2; delete one of them"));
}

}  // namespace
}  // namespace troupe::serving::tokenizer
