#include "gpu/nccl_id.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace troupe::gpu {

absl::StatusOr<NcclUniqueId> NcclUniqueId::FromBytes(std::string bytes) {
  NcclUniqueId id{std::move(bytes)};
  if (absl::Status valid = id.Validate(); !valid.ok()) return valid;
  return id;
}

absl::Status NcclUniqueId::Validate() const {
  if (bytes.size() == kSize) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "NCCL unique id has ", bytes.size(), " bytes but NCCL's have exactly ", kSize,
      "; pass the bytes GenerateNcclUniqueId made on rank 0, unchanged (binary, not text)"));
}

}  // namespace troupe::gpu
