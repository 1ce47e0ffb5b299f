// Collective: one rank's side of the all-reduce of a group of ranks in this process (the ranks
// of a tensor-parallel model), behind one interface with two implementations:
//
//   NCCL (nccl.h's Communicator), when every rank has a GPU of its own. The communicators are
//   made in this process, one thread per rank calling Communicator::Create at once.
//
//   In-process, when ranks share a GPU: NCCL refuses two ranks on one device ("Duplicate GPU
//   detected"), yet tensor parallelism must be testable on a host with one GPU, and a group may
//   have more ranks than the host has GPUs. Each rank records a CUDA event after its partial
//   sum, the ranks meet at a host barrier, and each rank's stream waits for the others' events
//   and sums every rank's buffer into a buffer of its own (SumBuffers: fp32, in rank order, so
//   every rank gets the same bits); a second barrier and event round lets every rank finish
//   reading before any rank copies its sum back over its input. Ranks on different GPUs read
//   each other's buffers through peer access, which creation enables (and refuses without).
//
// Every rank makes the group's calls in the same order, each rank from its own thread. An
// in-process call blocks on the host until every rank has enqueued its part; an NCCL call only
// enqueues (NCCL synchronizes the ranks on the GPUs). Either way the data moves on the GPU,
// ordered with each rank's stream.
//
//   std::vector<std::unique_ptr<Collective>> group = *CreateCollectives({0, 0});  // in-process
//   // On rank r's thread, with a Stream of group[r]->device():
//   absl::Status s = group[r]->AllReduceSum(partial, count, DType::kFloat16, stream);
//   ...
//   DestroyCollectives(std::move(group));  // NCCL ranks are destroyed at once, one per thread
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu {

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int device() const = 0;
  // kind is "nccl" or "in-process", for logs and tests.
  virtual const char* kind() const = 0;

  // AllReduceSum replaces `count` elements of `dtype` at `data` (device memory of device())
  // with their sum over the ranks, in place, enqueued on `stream` (of device()). Every rank
  // passes the same count and dtype; a mismatch is an error on every rank (in-process) or
  // undefined (NCCL, as ncclAllReduce). A group that was aborted answers FailedPrecondition.
  virtual absl::Status AllReduceSum(void* data, size_t count, DType dtype, Stream& stream) = 0;

  // Abort fails every call of every rank of the group from now on, and wakes the in-process
  // ranks blocked in a call: a rank whose step failed aborts, so that the others do not wait
  // for it forever. NCCL work already enqueued cannot be recalled: a rank that failed after
  // its peers enqueued an NCCL all-reduce leaves them waiting on the GPU.
  virtual void Abort(const std::string& why) = 0;
};

enum class CollectiveKind {
  kAuto,       // NCCL when the devices are distinct, in-process otherwise
  kNccl,       // one rank per GPU, or an error
  kInProcess,  // any devices (peer access between distinct ones)
};

// CreateCollectives makes a group of devices.size() ranks, rank r on devices[r]. A device that
// does not exist is the error of Device::CheckIndex; NCCL asked for ranks that share a GPU, an
// in-process group of more than kMaxSumInputs ranks, or distinct GPUs without peer access for
// the in-process kind are InvalidArgument or FailedPrecondition naming the devices and the fix.
// One rank is a group too (its all-reduce returns at once).
absl::StatusOr<std::vector<std::unique_ptr<Collective>>> CreateCollectives(
    const std::vector<int>& devices, CollectiveKind kind = CollectiveKind::kAuto);

// DestroyCollectives destroys a group, each rank on a thread of its own and all at once: NCCL
// may wait in a rank's ncclCommDestroy for the other ranks. The ranks' streams must be idle.
void DestroyCollectives(std::vector<std::unique_ptr<Collective>> group);

}  // namespace troupe::gpu
