// GPT-2's pre-tokenizer: splits text into the pieces that BPE then merges within.
//
// The pieces are the matches of GPT-2's pattern (OpenAI's encoder.py), compiled with PCRE2 for
// Unicode letters (\p{L}) and numbers (\p{N}), which std::regex cannot express:
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
//   absl::StatusOr<Gpt2PreTokenizer> pre_tokenizer = Gpt2PreTokenizer::Create();
//   pre_tokenizer->Split("I'm here  now") == {"I", "'m", " here", " ", " now"}
//
// \s is PCRE2's Unicode whitespace (the Z categories plus tab, newline, vertical tab, form feed
// and carriage return), which is JavaScript's \s less U+FEFF.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace troupe::serving::tokenizer {

class Gpt2PreTokenizer {
 public:
  // Create compiles the pattern. It fails only where PCRE2 was built without Unicode support.
  static absl::StatusOr<Gpt2PreTokenizer> Create();

  // Split returns the pieces of `text` in order; concatenated, they are `text`. A run of bytes
  // that are not valid UTF-8 matches no part of the pattern and comes out as a piece of its own,
  // so any bytes can be tokenized and decoded back. Thread-safe.
  std::vector<std::string_view> Split(std::string_view text) const;

 private:
  class CompiledPattern;

  explicit Gpt2PreTokenizer(std::shared_ptr<const CompiledPattern> pattern);

  // Shared between copies: PCRE2 allows concurrent matching against one compiled pattern.
  std::shared_ptr<const CompiledPattern> pattern_;
};

}  // namespace troupe::serving::tokenizer
