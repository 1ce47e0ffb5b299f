#include "serving/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::model {
namespace {

// A header bigger than this is not a checkpoint header (Hugging Face's reader caps it at
// 100 MB too).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::StatusOr<TensorDType> ParseDType(const std::string& name) {
  if (name == "F32") return TensorDType::kF32;
  if (name == "F16") return TensorDType::kF16;
  if (name == "BF16") return TensorDType::kBF16;
  return absl::UnimplementedError(
      absl::StrCat("dtype ", name, " is not supported (F32, F16 and BF16 are)"));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

const char* TensorDTypeName(TensorDType dtype) {
  switch (dtype) {
    case TensorDType::kF32:
      return "F32";
    case TensorDType::kF16:
      return "F16";
    case TensorDType::kBF16:
      return "BF16";
  }
  return "?";
}

size_t TensorDTypeSize(TensorDType dtype) { return dtype == TensorDType::kF32 ? 4 : 2; }

int64_t TensorView::num_elements() const {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (address != nullptr) munmap(address, length);
  }
};

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  struct stat info;
  if (fstat(fd, &info) != 0) {
    const int error = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", std::strerror(error)));
  }
  const size_t size = static_cast<size_t>(info.st_size);
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file ", path, " (", size, " bytes): ", what));
  };
  if (size < 8) {
    close(fd);
    return fail("shorter than the 8-byte header length; the file is truncated or not safetensors");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->address = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (mapping->address == MAP_FAILED) {
    mapping->address = nullptr;
    return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(errno)));
  }
  mapping->length = size;
  const auto* bytes = static_cast<const uint8_t*>(mapping->address);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[i];
  if (header_length > kMaxHeaderBytes || header_length > size - 8) {
    return fail(absl::StrCat("the header claims ", header_length,
                             " bytes, more than the file holds; the file is truncated or not "
                             "safetensors"));
  }
  const nlohmann::json header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_length, nullptr,
                                                      /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return fail("the header is not a JSON object");
  }
  SafetensorsFile file;
  file.path_ = path;
  file.data_ = bytes + 8 + header_length;
  const size_t data_size = size - 8 - header_length;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return fail("\"__metadata__\" is not an object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) return fail(absl::StrCat("metadata \"", key, "\" is not a string"));
        file.metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    auto tensor_fail = [&](const std::string& what) {
      return fail(absl::StrCat("tensor \"", name, "\": ", what));
    };
    if (!value.is_object() || !value.contains("dtype") || !value["dtype"].is_string() ||
        !value.contains("shape") || !value["shape"].is_array() || !value.contains("data_offsets") ||
        !value["data_offsets"].is_array() || value["data_offsets"].size() != 2) {
      return tensor_fail("needs \"dtype\", \"shape\" and two \"data_offsets\"");
    }
    absl::StatusOr<TensorDType> dtype = ParseDType(value["dtype"].get<std::string>());
    if (!dtype.ok()) return tensor_fail(std::string(dtype.status().message()));
    Entry entry{*dtype, {}, 0, 0};
    int64_t elements = 1;
    for (const auto& dim : value["shape"]) {
      if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
        return tensor_fail("a dimension of \"shape\" is not a non-negative integer");
      }
      entry.shape.push_back(dim.get<int64_t>());
      if (entry.shape.back() > 0 &&
          elements > std::numeric_limits<int64_t>::max() / entry.shape.back()) {
        return tensor_fail("its shape overflows");
      }
      elements *= entry.shape.back();
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return tensor_fail("\"data_offsets\" are not non-negative integers");
    }
    entry.begin = offsets[0].get<size_t>();
    entry.end = offsets[1].get<size_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      return tensor_fail(absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                      ") lie outside the ", data_size, " bytes of data"));
    }
    const uint64_t expected = static_cast<uint64_t>(elements) * TensorDTypeSize(*dtype);
    if (entry.end - entry.begin != expected) {
      return tensor_fail(absl::StrCat("holds ", entry.end - entry.begin, " bytes but shape ",
                                      ShapeString(entry.shape), " of ", TensorDTypeName(*dtype),
                                      " needs ", expected));
    }
    file.tensors_.emplace(name, std::move(entry));
  }
  file.mapping_ = std::move(mapping);
  return file;
}

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<TensorView> SafetensorsFile::Tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" is not in ", path_));
  }
  const Entry& e = it->second;
  return TensorView{name, e.dtype, e.shape,
                    absl::Span<const uint8_t>(data_ + e.begin, e.end - e.begin)};
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
    if (t.bytes.size() != static_cast<size_t>(elements) * TensorDTypeSize(t.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\": ", t.bytes.size(),
                                                     " bytes for shape ", ShapeString(t.shape),
                                                     " of ", TensorDTypeName(t.dtype)));
    }
    header[t.name] = {{"dtype", TensorDTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // Keeps the data 8-byte aligned.
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorToWrite& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace troupe::serving::model
