#include "serving/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

namespace troupe::serving::tokenizer {
namespace {

// The alphabet as in GPT-2's encoder.py (bytes_to_unicode).
struct Alphabet {
  std::array<char32_t, 256> character_of_byte;
  // Indexed by code point: the byte a character stands for, or -1.
  std::array<int16_t, 512> byte_of_character;
};

bool StandsForItself(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
         (byte >= 0xAE && byte <= 0xFF);
}

const Alphabet& GetAlphabet() {
  static const Alphabet alphabet = [] {
    Alphabet result;
    result.byte_of_character.fill(-1);
    char32_t next_substitute = 0x100;
    for (int byte = 0; byte < 256; ++byte) {
      char32_t character = StandsForItself(byte) ? byte : next_substitute++;
      result.character_of_byte[byte] = character;
      result.byte_of_character[character] = static_cast<int16_t>(byte);
    }
    return result;
  }();
  return alphabet;
}

void AppendUtf8(char32_t code_point, std::string& out) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

// TwoByteCodePoint decodes the two-byte UTF-8 sequence at text[i], or returns -1. The alphabet
// lies below U+0200, so ByteLevelDecode needs no longer sequences: they pass through unchanged.
int TwoByteCodePoint(std::string_view text, size_t i) {
  if (i + 1 >= text.size()) return -1;
  unsigned char lead = text[i];
  unsigned char trail = text[i + 1];
  if ((lead & 0xE0) != 0xC0 || (trail & 0xC0) != 0x80) return -1;
  int code_point = ((lead & 0x1F) << 6) | (trail & 0x3F);
  return code_point >= 0x80 ? code_point : -1;  // Overlong encodings are not characters.
}

}  // namespace

std::string ByteLevelEncode(std::string_view bytes) {
  const Alphabet& alphabet = GetAlphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char byte : bytes) AppendUtf8(alphabet.character_of_byte[byte], out);
  return out;
}

std::string ByteLevelDecode(std::string_view token) {
  const Alphabet& alphabet = GetAlphabet();
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    unsigned char byte = token[i];
    if (byte < 0x80) {
      int decoded = alphabet.byte_of_character[byte];
      out += static_cast<char>(decoded >= 0 ? decoded : byte);
      ++i;
      continue;
    }
    int code_point = TwoByteCodePoint(token, i);
    if (code_point >= 0 && code_point < static_cast<int>(alphabet.byte_of_character.size()) &&
        alphabet.byte_of_character[code_point] >= 0) {
      out += static_cast<char>(alphabet.byte_of_character[code_point]);
      i += 2;
    } else {
      out += static_cast<char>(byte);
      ++i;
    }
  }
  return out;
}

}  // namespace troupe::serving::tokenizer
