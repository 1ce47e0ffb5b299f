#include "gpu/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace {

static_assert(NcclUniqueId::kSize == NCCL_UNIQUE_ID_BYTES,
              "NcclUniqueId::kSize must match this NCCL's unique id size");
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES);

constexpr char kNvlsVariable[] = "NCCL_NVLS_ENABLE";

ncclComm_t Native(void* comm) { return static_cast<ncclComm_t>(comm); }

cudaStream_t NativeStream(const Stream& stream) { return static_cast<cudaStream_t>(stream.raw()); }

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kFloat16:
      return ncclFloat16;
    case DType::kBFloat16:
      return ncclBfloat16;
  }
  return ncclFloat32;  // Unreachable: the switch covers every DType.
}

// Check turns an NCCL result into a status naming the call and the device, with NCCL's own
// account of the last error (ncclGetErrorString alone says only "unhandled system error").
absl::Status Check(ncclResult_t code, const char* call, int device) {
  absl::Status status = internal::NcclStatus(code, call, device);
  if (status.ok()) return status;
  const char* detail = ncclGetLastError(nullptr);
  if (detail == nullptr || *detail == '\0') return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), ": ", detail));
}

// CheckHostCall is Check for the calls that concern no one device (ids, groups).
absl::Status CheckHostCall(ncclResult_t code, const char* call) {
  if (code == ncclSuccess) return absl::OkStatus();
  const char* detail = ncclGetLastError(nullptr);
  return absl::InternalError(absl::StrCat(call, " failed: ", ncclGetErrorString(code),
                                          detail != nullptr && *detail != '\0' ? ": " : "",
                                          detail != nullptr ? detail : ""));
}

// KeepNvlsOff makes sure NCCL never uses NVLink multicast, which can take a shared host's GPUs
// out of service. NCCL reads the variable when it initializes, so this runs before any NCCL
// call that may initialize it. The lock keeps ranks that start on several threads from
// calling setenv at once.
absl::Status KeepNvlsOff() {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  const char* value = std::getenv(kNvlsVariable);
  if (value == nullptr) {
    if (setenv(kNvlsVariable, "0", /*overwrite=*/0) != 0) {
      return absl::InternalError(
          absl::StrCat("could not set ", kNvlsVariable, "=0: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  if (std::string(value) == "0") return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(kNvlsVariable, "=", value,
                   " would let NCCL use NVLink multicast, which Troupe never uses "
                   "(it can put a shared host's GPUs out of service); unset it or set it to 0"));
}

}  // namespace

absl::StatusOr<NcclUniqueId> GenerateNcclUniqueId() {
  if (absl::Status nvls = KeepNvlsOff(); !nvls.ok()) return nvls;
  ncclUniqueId native;
  if (absl::Status made = CheckHostCall(ncclGetUniqueId(&native), "ncclGetUniqueId"); !made.ok()) {
    return made;
  }
  return NcclUniqueId{std::string(native.internal, NCCL_UNIQUE_ID_BYTES)};
}

// --- Communicator --------------------------------------------------------------------------------

absl::StatusOr<Communicator> Communicator::Create(const NcclUniqueId& id, int rank, int world_size,
                                                  int device) {
  if (absl::Status valid = id.Validate(); !valid.ok()) return valid;
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Communicator::Create: world_size = ", world_size, " must be at least 1"));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("Communicator::Create: rank ", rank,
                                                   " is outside 0..", world_size - 1,
                                                   " (world_size ", world_size, ")"));
  }
  if (absl::Status nvls = KeepNvlsOff(); !nvls.ok()) return nvls;
  // NCCL binds the communicator to the device current at creation.
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  ncclUniqueId native;
  std::memcpy(native.internal, id.bytes.data(), NCCL_UNIQUE_ID_BYTES);
  ncclComm_t comm = nullptr;
  absl::Status created =
      Check(ncclCommInitRank(&comm, world_size, native, rank), "ncclCommInitRank", device);
  if (!created.ok()) {
    return absl::Status(created.code(),
                        absl::StrCat("rank ", rank, " of ", world_size, ": ", created.message()));
  }
  return Communicator(comm, rank, world_size, device);
}

Communicator::Communicator(Communicator&& other) noexcept
    : comm_(std::exchange(other.comm_, nullptr)),
      rank_(other.rank_),
      world_size_(other.world_size_),
      device_(other.device_) {}

Communicator& Communicator::operator=(Communicator&& other) noexcept {
  if (this != &other) {
    Destroy();
    comm_ = std::exchange(other.comm_, nullptr);
    rank_ = other.rank_;
    world_size_ = other.world_size_;
    device_ = other.device_;
  }
  return *this;
}

Communicator::~Communicator() { Destroy(); }

void Communicator::Destroy() {
  if (comm_ == nullptr) return;
  if (absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_); scoped.ok()) {
    ncclCommDestroy(Native(comm_));  // A destructor cannot report its error.
  }
  comm_ = nullptr;
}

absl::Status Communicator::CheckCall(const char* user, const Stream& stream, size_t count,
                                     const void* first, const void* second) const {
  if (comm_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        user, ": the Communicator was moved from; use the Communicator it was moved to"));
  }
  if (absl::Status valid = CheckStreamFor(stream, device_, user); !valid.ok()) return valid;
  if (count > 0 && (first == nullptr || second == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(user, ": a buffer is null but ", count, " elements are to be moved"));
  }
  return absl::OkStatus();
}

absl::Status Communicator::CheckPeer(const char* user, int peer) const {
  if (peer >= 0 && peer < world_size_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(user, ": peer ", peer, " is outside 0..",
                                                 world_size_ - 1, " (world_size ", world_size_,
                                                 ")"));
}

absl::Status Communicator::AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                                        const Stream& stream) {
  if (absl::Status valid = CheckCall("Communicator::AllReduceSum", stream, count, send, recv);
      !valid.ok()) {
    return valid;
  }
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  return Check(ncclAllReduce(send, recv, count, NcclType(dtype), ncclSum, Native(comm_),
                             NativeStream(stream)),
               "ncclAllReduce", device_);
}

absl::Status Communicator::AllGather(const void* send, void* recv, size_t send_count, DType dtype,
                                     const Stream& stream) {
  if (absl::Status valid = CheckCall("Communicator::AllGather", stream, send_count, send, recv);
      !valid.ok()) {
    return valid;
  }
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  return Check(
      ncclAllGather(send, recv, send_count, NcclType(dtype), Native(comm_), NativeStream(stream)),
      "ncclAllGather", device_);
}

absl::Status Communicator::Send(const void* data, size_t count, DType dtype, int peer,
                                const Stream& stream) {
  constexpr char kUser[] = "Communicator::Send";
  if (absl::Status valid = CheckCall(kUser, stream, count, data, data); !valid.ok()) return valid;
  if (absl::Status valid = CheckPeer(kUser, peer); !valid.ok()) return valid;
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  return Check(ncclSend(data, count, NcclType(dtype), peer, Native(comm_), NativeStream(stream)),
               "ncclSend", device_);
}

absl::Status Communicator::Recv(void* data, size_t count, DType dtype, int peer,
                                const Stream& stream) {
  constexpr char kUser[] = "Communicator::Recv";
  if (absl::Status valid = CheckCall(kUser, stream, count, data, data); !valid.ok()) return valid;
  if (absl::Status valid = CheckPeer(kUser, peer); !valid.ok()) return valid;
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  return Check(ncclRecv(data, count, NcclType(dtype), peer, Native(comm_), NativeStream(stream)),
               "ncclRecv", device_);
}

// --- NcclGroup -----------------------------------------------------------------------------------

absl::StatusOr<NcclGroup> NcclGroup::Start() {
  if (absl::Status started = CheckHostCall(ncclGroupStart(), "ncclGroupStart"); !started.ok()) {
    return started;
  }
  NcclGroup group;
  group.open_ = true;
  return group;
}

NcclGroup::NcclGroup(NcclGroup&& other) noexcept : open_(std::exchange(other.open_, false)) {}

NcclGroup::~NcclGroup() {
  if (open_) ncclGroupEnd();  // Documented: call End to see the error.
}

absl::Status NcclGroup::End() {
  if (!open_) {
    return absl::FailedPreconditionError(
        "NcclGroup::End: the group has already ended; start a new NcclGroup");
  }
  open_ = false;
  // The grouped calls launch here, each on its communicator's device.
  return CheckHostCall(ncclGroupEnd(), "ncclGroupEnd");
}

}  // namespace troupe::gpu
