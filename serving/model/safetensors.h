// Reading and writing safetensors files (Hugging Face's checkpoint format): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
// then the raw data. Files are memory-mapped: opening one reads only the header, and a tensor's
// bytes are paged in when they are used.
//
//   absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open("model.safetensors");
//   absl::StatusOr<TensorView> wq = file->Tensor("model.layers.0.self_attn.q_proj.weight");
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace troupe::serving::model {

// The element types Troupe reads ("F32", "F16", "BF16" in the header); others are refused with
// a clear error when the tensor is used.
enum class TensorDType { kF32, kF16, kBF16 };

const char* TensorDTypeName(TensorDType dtype);
size_t TensorDTypeSize(TensorDType dtype);

// TensorView is one tensor of an open file: its bytes stay in the mapping.
struct TensorView {
  std::string name;
  TensorDType dtype;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;

  int64_t num_elements() const;
};

class SafetensorsFile {
 public:
  // Open maps `path` and checks its header: the length fits the file, the JSON is an object of
  // tensors with known dtypes, and every byte range lies in the data and matches its shape. The
  // error names the file, the tensor and what is wrong.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;

  const std::string& path() const { return path_; }
  // Names lists the tensors in the file, sorted.
  std::vector<std::string> Names() const;
  bool Contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // Tensor returns a view of `name`, or NotFound naming the file.
  absl::StatusOr<TensorView> Tensor(const std::string& name) const;
  // Metadata is the header's "__metadata__" string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;  // The mmap of the file; unmapped when the last view's file goes away.
  struct Entry {
    TensorDType dtype;
    std::vector<int64_t> shape;
    size_t begin;  // Offsets into the data section.
    size_t end;
  };
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // Start of the data section.
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// TensorToWrite is one tensor for WriteSafetensors: `bytes` must hold the shape's elements.
struct TensorToWrite {
  std::string name;
  TensorDType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// WriteSafetensors writes `tensors` to `path` (data in the given order, 8-byte aligned header),
// replacing the file; a size that does not match a shape is an error naming the tensor.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace troupe::serving::model
