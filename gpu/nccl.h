// Communicator: one NCCL rank on one device, with collectives and point-to-point transfers
// enqueued on a Stream.
//
// Every rank calls Communicator::Create with the same NcclUniqueId (made by rank 0 with
// GenerateNcclUniqueId and handed around, e.g. by nccl_rendezvous.h over actor messages);
// Create returns once all `world_size` ranks have joined, so ranks must call it concurrently
// (one thread or process per rank). Element types are fp32, fp16 and bf16; counts are elements.
//
// NVLink multicast (NVLS) is never used: on shared hosts it can put the GPUs out of service for
// everyone. Create sets NCCL_NVLS_ENABLE=0 when it is unset, and refuses to run with any other
// value.
//
//   NcclUniqueId id = *GenerateNcclUniqueId();  // rank 0; the others receive it
//   Communicator comm = *Communicator::Create(id, rank, world_size, device);
//   comm.AllReduceSum(grads, grads, count, DType::kBFloat16, stream);
//   {
//     NcclGroup group = *NcclGroup::Start();   // a send and a receive that must overlap
//     comm.Send(out, count, DType::kFloat32, next, stream);
//     comm.Recv(in, count, DType::kFloat32, previous, stream);
//     absl::Status s = group.End();
//   }
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "gpu/nccl_id.h"
#include "gpu/stream.h"

namespace troupe::gpu {

// GenerateNcclUniqueId makes a fresh id (ncclGetUniqueId): call it on rank 0 only.
absl::StatusOr<NcclUniqueId> GenerateNcclUniqueId();

class Communicator {
 public:
  // Create joins rank `rank` of `world_size` on `device`; it blocks until every rank has joined.
  static absl::StatusOr<Communicator> Create(const NcclUniqueId& id, int rank, int world_size,
                                             int device);

  Communicator(Communicator&& other) noexcept;
  Communicator& operator=(Communicator&& other) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  // The destructor frees the communicator (ncclCommDestroy). Destroy it once its work is done
  // (Stream::Synchronize), and every rank's at about the same time: NCCL may wait there for the
  // other ranks.
  ~Communicator();

  // AllReduceSum makes `recv` on every rank the element-wise sum of every rank's `send`
  // (`count` elements each). `send` == `recv` reduces in place.
  absl::Status AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                            const Stream& stream);

  // AllGather concatenates every rank's `send_count` elements into `recv`, in rank order;
  // `recv` holds send_count * world_size elements.
  absl::Status AllGather(const void* send, void* recv, size_t send_count, DType dtype,
                         const Stream& stream);

  // Send and Recv move `count` elements to or from rank `peer`. A pair that must run at the
  // same time on one rank (a send and a receive with the same peer, a ring) belongs in one
  // NcclGroup, or the rank waits for itself.
  absl::Status Send(const void* data, size_t count, DType dtype, int peer, const Stream& stream);
  absl::Status Recv(void* data, size_t count, DType dtype, int peer, const Stream& stream);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int device() const { return device_; }

 private:
  Communicator(void* comm, int rank, int world_size, int device)
      : comm_(comm), rank_(rank), world_size_(world_size), device_(device) {}
  // CheckCall checks what every operation needs: a live communicator, a Stream of its device,
  // and non-null buffers when there are elements to move.
  absl::Status CheckCall(const char* user, const Stream& stream, size_t count, const void* first,
                         const void* second) const;
  absl::Status CheckPeer(const char* user, int peer) const;
  void Destroy();

  void* comm_ = nullptr;  // ncclComm_t.
  int rank_ = -1;
  int world_size_ = 0;
  int device_ = -1;
};

// NcclGroup fuses the NCCL calls made between Start and End on this thread into one launch
// (ncclGroupStart/ncclGroupEnd), which is how one thread drives several sends and receives
// that depend on each other.
class NcclGroup {
 public:
  static absl::StatusOr<NcclGroup> Start();

  NcclGroup(NcclGroup&& other) noexcept;
  NcclGroup& operator=(NcclGroup&&) = delete;
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;
  // The destructor ends a group that End did not; its error is lost, so call End.
  ~NcclGroup();

  // End launches the grouped calls and reports their error. Calling it twice is an error.
  absl::Status End();

 private:
  NcclGroup() = default;
  bool open_ = false;
};

}  // namespace troupe::gpu
