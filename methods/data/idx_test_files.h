// Writes small IDX files, plain or gzip, for the tests of idx and fashion_mnist. Test-only.
//
//   std::string path = WriteIdxFile(dir + "/labels.gz", IdxBytes(kIdxLabelsMagic, {3}, {1, 2, 3}),
//                                   Compression::kGzip);
#pragma once

#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace troupe::methods::data {

enum class Compression { kPlain, kGzip };

// IdxBytes is an IDX file's bytes: the big-endian magic and dimensions, then `data`.
inline std::vector<uint8_t> IdxBytes(uint32_t magic, const std::vector<uint32_t>& dims,
                                     const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes;
  const auto put = [&](uint32_t word) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back((word >> shift) & 0xff);
  };
  put(magic);
  for (const uint32_t dim : dims) put(dim);
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

// WriteIdxFile writes `bytes` to `path` (gzip-compressed for kGzip) and returns the path, or ""
// if it could not write.
inline std::string WriteIdxFile(const std::string& path, const std::vector<uint8_t>& bytes,
                                Compression compression) {
  if (compression == Compression::kPlain) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return out ? path : "";
  }
  gzFile file = gzopen(path.c_str(), "wb");
  if (file == nullptr) return "";
  const int written = gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  const bool closed = gzclose(file) == Z_OK;
  return written == static_cast<int>(bytes.size()) && closed ? path : "";
}

// ReadRaw returns a file's bytes as stored (not decompressed).
inline std::vector<uint8_t> ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace troupe::methods::data
