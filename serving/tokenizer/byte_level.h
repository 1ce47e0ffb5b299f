// GPT-2's byte-level alphabet: one printable Unicode character for each of the 256 bytes.
//
// GPT-2's vocabulary spells tokens in this alphabet rather than in raw bytes, so that every
// token is printable text in vocab.json: bytes that are printable Latin-1 stand for themselves,
// the others (controls, space, 0x7F-0xA0, 0xAD) become U+0100 onwards in byte order. A space is
// "Ġ" (U+0120), a newline "Ċ" (U+010A):
//
//   ByteLevelEncode(" world") == "Ġworld"
//   ByteLevelDecode("Ġworld") == " world"
#pragma once

#include <string>
#include <string_view>

namespace troupe::serving::tokenizer {

// ByteLevelEncode spells each byte of `bytes` (any bytes, not only UTF-8) as its character in
// the byte-level alphabet, UTF-8 encoded.
std::string ByteLevelEncode(std::string_view bytes);

// ByteLevelDecode turns a token spelled in the byte-level alphabet back into its bytes. A
// character outside the alphabet (as in a special token such as "<|im_start|>" written in another
// script) keeps its own UTF-8 bytes, and so does a byte of `token` that is not valid UTF-8.
std::string ByteLevelDecode(std::string_view token);

}  // namespace troupe::serving::tokenizer
