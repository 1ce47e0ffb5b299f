// NcclUniqueId: the 128 bytes with which NCCL ranks find each other, as a plain value that can
// cross processes.
//
// Rank 0 makes one (GenerateNcclUniqueId in nccl.h), every rank passes the same bytes to
// Communicator::Create. This header needs neither CUDA nor NCCL, so CPU-only code (the actors
// that hand the id around, nccl_rendezvous.h) can carry it. The `inspect` overload lets it be a
// field of a CAF message type.
//
//   absl::StatusOr<NcclUniqueId> id = NcclUniqueId::FromBytes(received_bytes);
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "caf/meta/type_name.hpp"

namespace troupe::gpu {

struct NcclUniqueId {
  // kSize is NCCL_UNIQUE_ID_BYTES; nccl.cc checks at compile time that the two agree.
  static constexpr size_t kSize = 128;

  // FromBytes wraps `bytes` after checking the size.
  static absl::StatusOr<NcclUniqueId> FromBytes(std::string bytes);

  // Validate returns InvalidArgument unless `bytes` has exactly kSize bytes.
  absl::Status Validate() const;

  std::string bytes;  // Opaque; binary (may hold '\0').

  friend bool operator==(const NcclUniqueId& a, const NcclUniqueId& b) {
    return a.bytes == b.bytes;
  }
  friend bool operator!=(const NcclUniqueId& a, const NcclUniqueId& b) { return !(a == b); }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NcclUniqueId& x) {
  return f(caf::meta::type_name("NcclUniqueId"), x.bytes);
}

}  // namespace troupe::gpu
