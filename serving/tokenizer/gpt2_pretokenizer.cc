#include "serving/tokenizer/gpt2_pretokenizer.h"

#include <pcre2.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe::serving::tokenizer {
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string Pcre2ErrorMessage(int error_code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(error_code, buffer, sizeof(buffer)) < 0) {
    return absl::StrCat("PCRE2 error ", error_code);
  }
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

class Gpt2PreTokenizer::CompiledPattern {
 public:
  explicit CompiledPattern(pcre2_code* code) : code_(code) {}
  CompiledPattern(const CompiledPattern&) = delete;
  CompiledPattern& operator=(const CompiledPattern&) = delete;
  ~CompiledPattern() { pcre2_code_free(code_); }

  const pcre2_code* code() const { return code_; }

 private:
  pcre2_code* code_;
};

Gpt2PreTokenizer::Gpt2PreTokenizer(std::shared_ptr<const CompiledPattern> pattern)
    : pattern_(std::move(pattern)) {}

absl::StatusOr<Gpt2PreTokenizer> Gpt2PreTokenizer::Create() {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2_UCP makes \s Unicode-aware; PCRE2_MATCH_INVALID_UTF lets matching skip over bytes that
  // are not UTF-8 instead of rejecting the whole subject.
  pcre2_code* code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern.data()), kGpt2Pattern.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot compile GPT-2's pre-tokenizer pattern with PCRE2 at offset ",
                     error_offset, ": ", Pcre2ErrorMessage(error_code),
                     "; PCRE2 must be built with Unicode support (Debian's libpcre2-8-0 is)"));
  }
  // The JIT is several times faster; where it is unavailable the interpreter gives the same
  // matches, so its failure is not an error.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Gpt2PreTokenizer(std::make_shared<const CompiledPattern>(code));
}

std::vector<std::string_view> Gpt2PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  const pcre2_code* code = pattern_->code();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  if (match_data == nullptr) {
    std::fprintf(stderr, "Gpt2PreTokenizer: out of memory for PCRE2 match data\n");
    std::abort();
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    int result = pcre2_match(code, subject, text.size(), offset, 0, match_data.get(), nullptr);
    if (result == PCRE2_ERROR_NOMATCH) {
      pieces.push_back(text.substr(offset));  // Only bytes that are not UTF-8 remain.
      break;
    }
    // Every alternative of the pattern is a single repeat without nesting, so PCRE2's match,
    // depth and heap limits cannot be reached (gpt2_pretokenizer_test splits megabytes).
    if (result < 0) {
      std::fprintf(stderr, "Gpt2PreTokenizer: PCRE2 failed to match at byte %zu: %s\n", offset,
                   Pcre2ErrorMessage(result).c_str());
      std::abort();
    }
    const PCRE2_SIZE* match = pcre2_get_ovector_pointer(match_data.get());
    if (match[0] > offset) pieces.push_back(text.substr(offset, match[0] - offset));
    pieces.push_back(text.substr(match[0], match[1] - match[0]));
    offset = match[1];  // Every alternative consumes at least one character.
  }
  return pieces;
}

}  // namespace troupe::serving::tokenizer
