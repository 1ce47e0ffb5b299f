#include "gpu/collective.h"

#include <cuda_runtime.h>

#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "actors/status_macros.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "gpu/buffer.h"
#include "gpu/collective_kernels.h"
#include "gpu/device.h"
#include "gpu/event.h"
#include "gpu/internal/check.h"
#include "gpu/nccl.h"
#include "gpu/nccl_id.h"

namespace troupe::gpu {
namespace {

std::string DeviceList(const std::vector<int>& devices) {
  return absl::StrCat("[", absl::StrJoin(devices, ", "), "]");
}

absl::Status Aborted(int rank, const std::string& why) {
  return absl::FailedPreconditionError(
      absl::StrCat("collective rank ", rank, ": the group was aborted (", why,
                   "); make a new group"));
}

// --- NCCL ------------------------------------------------------------------------------------

// AbortFlag is what the ranks of an NCCL group share: NCCL itself has no host-side state to
// poison, so Abort only stops the calls that come after it.
struct AbortFlag {
  absl::Mutex mutex;
  bool aborted = false;
  std::string why;
};

class NcclCollective : public Collective {
 public:
  NcclCollective(Communicator comm, std::shared_ptr<AbortFlag> flag)
      : comm_(std::move(comm)), flag_(std::move(flag)) {}

  int rank() const override { return comm_.rank(); }
  int world_size() const override { return comm_.world_size(); }
  int device() const override { return comm_.device(); }
  const char* kind() const override { return "nccl"; }

  absl::Status AllReduceSum(void* data, size_t count, DType dtype, Stream& stream) override {
    {
      absl::MutexLock lock(&flag_->mutex);
      if (flag_->aborted) return Aborted(rank(), flag_->why);
    }
    return comm_.AllReduceSum(data, data, count, dtype, stream);
  }

  void Abort(const std::string& why) override {
    absl::MutexLock lock(&flag_->mutex);
    if (flag_->aborted) return;
    flag_->aborted = true;
    flag_->why = why;
  }

 private:
  Communicator comm_;
  std::shared_ptr<AbortFlag> flag_;
};

absl::StatusOr<std::vector<std::unique_ptr<Collective>>> CreateNccl(
    const std::vector<int>& devices) {
  absl::StatusOr<NcclUniqueId> id = GenerateNcclUniqueId();
  if (!id.ok()) return id.status();
  const int world = static_cast<int>(devices.size());
  // ncclCommInitRank returns only once every rank has joined: one thread per rank.
  std::vector<std::optional<absl::StatusOr<Communicator>>> made(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back(
        [&, r] { made[r].emplace(Communicator::Create(*id, r, world, devices[r])); });
  }
  for (std::thread& thread : threads) thread.join();
  auto flag = std::make_shared<AbortFlag>();
  std::vector<std::unique_ptr<Collective>> group;
  for (int r = 0; r < world; ++r) {
    if (!made[r]->ok()) return made[r]->status();
    group.push_back(std::make_unique<NcclCollective>(**std::move(made[r]), flag));
  }
  return group;
}

// --- In-process ------------------------------------------------------------------------------

// InProcessGroup is the state the ranks of an in-process group share: the host barrier, each
// rank's published buffer, and each rank's two events (its partial is ready; it has finished
// reading everyone's partials).
class InProcessGroup {
 public:
  struct Slot {
    void* data = nullptr;
    size_t count = 0;
    DType dtype = DType::kFloat32;
  };

  InProcessGroup(std::vector<int> devices, std::vector<Event> ready, std::vector<Event> read)
      : devices_(std::move(devices)),
        ready_(std::move(ready)),
        read_(std::move(read)),
        slots_(devices_.size()) {}

  int world() const { return static_cast<int>(devices_.size()); }
  int device(int rank) const { return devices_[rank]; }
  Event& ready(int rank) { return ready_[rank]; }
  Event& read(int rank) { return read_[rank]; }

  // Arrive blocks until every rank has arrived (publishing `slot` first, when given) or the
  // group is aborted.
  absl::Status Arrive(int rank, const Slot* slot) {
    absl::MutexLock lock(&mutex_);
    if (aborted_) return Aborted(rank, why_);
    if (slot != nullptr) slots_[rank] = *slot;
    const int64_t generation = generation_;
    if (++arrived_ == world()) {
      arrived_ = 0;
      ++generation_;
      changed_.SignalAll();
      return absl::OkStatus();
    }
    while (generation_ == generation && !aborted_) changed_.Wait(&mutex_);
    if (generation_ == generation) return Aborted(rank, why_);
    return absl::OkStatus();
  }

  // Slots is every rank's published buffer; valid between the first and second barrier of a
  // call (no rank publishes again before every rank has passed the second).
  std::vector<Slot> Slots() {
    absl::MutexLock lock(&mutex_);
    return slots_;
  }

  void Abort(const std::string& why) {
    absl::MutexLock lock(&mutex_);
    if (aborted_) return;
    aborted_ = true;
    why_ = why;
    changed_.SignalAll();
  }

 private:
  const std::vector<int> devices_;
  std::vector<Event> ready_;
  std::vector<Event> read_;
  absl::Mutex mutex_;
  absl::CondVar changed_;
  std::vector<Slot> slots_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  bool aborted_ = false;
  std::string why_;
};

class InProcessCollective : public Collective {
 public:
  InProcessCollective(std::shared_ptr<InProcessGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return group_->world(); }
  int device() const override { return group_->device(rank_); }
  const char* kind() const override { return "in-process"; }

  absl::Status AllReduceSum(void* data, size_t count, DType dtype, Stream& stream) override {
    absl::Status status = Run(data, count, dtype, stream);
    // A rank that fails here would leave the others at the barrier: take the group down.
    if (!status.ok()) group_->Abort(absl::StrCat("rank ", rank_, ": ", status.message()));
    return status;
  }

  void Abort(const std::string& why) override { group_->Abort(why); }

 private:
  absl::Status Run(void* data, size_t count, DType dtype, Stream& stream) {
    TROUPE_RETURN_IF_ERROR(
        CheckStreamFor(stream, device(), "Collective::AllReduceSum"));
    if (world_size() == 1) return absl::OkStatus();
    absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device());
    if (!scoped.ok()) return scoped.status();
    const size_t bytes = count * SizeOf(dtype);
    // 1. This rank's partial is ready once its stream gets here; publish it and meet the others.
    TROUPE_RETURN_IF_ERROR(group_->ready(rank_).Record(stream));
    const InProcessGroup::Slot mine{data, count, dtype};
    TROUPE_RETURN_IF_ERROR(group_->Arrive(rank_, &mine));
    const std::vector<InProcessGroup::Slot> slots = group_->Slots();
    std::vector<const void*> inputs;
    for (int r = 0; r < world_size(); ++r) {
      if (slots[r].count != count || slots[r].dtype != dtype) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Collective::AllReduceSum: rank ", r, " reduces ", slots[r].count, " elements of ",
            DTypeName(slots[r].dtype), ", rank ", rank_, " ", count, " of ", DTypeName(dtype),
            "; every rank must make the same calls"));
      }
      inputs.push_back(slots[r].data);
      if (r != rank_) TROUPE_RETURN_IF_ERROR(group_->ready(r).EnqueueWait(stream));
    }
    // 2. Sum every partial into this rank's own buffer, then meet again: after the second
    // barrier every rank's stream waits until all have finished reading.
    if (sum_.bytes() < bytes) {
      // The old buffer may still be read by this stream's earlier work.
      TROUPE_RETURN_IF_ERROR(stream.Synchronize());
      sum_ = DeviceBuffer();
      absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(bytes, device());
      if (!buffer.ok()) return buffer.status();
      sum_ = *std::move(buffer);
    }
    if (count > 0) {
      TROUPE_RETURN_IF_ERROR(SumBuffers(inputs.data(), world_size(), dtype,
                                                   sum_.data(), dtype,
                                                   static_cast<int64_t>(count), stream));
    }
    TROUPE_RETURN_IF_ERROR(group_->read(rank_).Record(stream));
    TROUPE_RETURN_IF_ERROR(group_->Arrive(rank_, nullptr));
    for (int r = 0; r < world_size(); ++r) {
      if (r != rank_) TROUPE_RETURN_IF_ERROR(group_->read(r).EnqueueWait(stream));
    }
    // 3. Nobody reads this rank's partial any more: the sum replaces it.
    if (count == 0) return absl::OkStatus();
    TROUPE_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(data, sum_.data(), bytes, cudaMemcpyDeviceToDevice,
                        static_cast<cudaStream_t>(stream.raw())),
        device());
    return absl::OkStatus();
  }

  std::shared_ptr<InProcessGroup> group_;
  const int rank_;
  DeviceBuffer sum_;
};

// EnablePeerAccess lets every device of `devices` read every other's memory.
absl::Status EnablePeerAccess(const std::vector<int>& devices) {
  const std::set<int> distinct(devices.begin(), devices.end());
  for (int device : distinct) {
    absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
    if (!scoped.ok()) return scoped.status();
    for (int peer : distinct) {
      if (peer == device) continue;
      int can = 0;
      TROUPE_CUDA_RETURN_IF_ERROR(cudaDeviceCanAccessPeer(&can, device, peer), device);
      if (can == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "in-process collective over devices ", DeviceList(devices), ": cuda:", device,
            " cannot read cuda:", peer,
            "'s memory (no peer access); give every rank a GPU of its own (NCCL)"));
      }
      const cudaError_t enabled = cudaDeviceEnablePeerAccess(peer, 0);
      if (enabled != cudaSuccess && enabled != cudaErrorPeerAccessAlreadyEnabled) {
        return internal::CudaStatus(enabled, "cudaDeviceEnablePeerAccess", device);
      }
      cudaGetLastError();  // cudaErrorPeerAccessAlreadyEnabled is not sticky; clear it anyway
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::unique_ptr<Collective>>> CreateInProcess(
    const std::vector<int>& devices) {
  if (devices.size() > static_cast<size_t>(kMaxSumInputs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in-process collective: ", devices.size(), " ranks over devices ", DeviceList(devices),
        "; it sums at most ", kMaxSumInputs, " ranks; use fewer ranks"));
  }
  TROUPE_RETURN_IF_ERROR(EnablePeerAccess(devices));
  std::vector<Event> ready, read;
  for (int device : devices) {
    for (std::vector<Event>* events : {&ready, &read}) {
      absl::StatusOr<Event> event = Event::Create(device, /*timing=*/false);
      if (!event.ok()) return event.status();
      events->push_back(*std::move(event));
    }
  }
  auto shared = std::make_shared<InProcessGroup>(devices, std::move(ready), std::move(read));
  std::vector<std::unique_ptr<Collective>> group;
  for (int r = 0; r < static_cast<int>(devices.size()); ++r) {
    group.push_back(std::make_unique<InProcessCollective>(shared, r));
  }
  return group;
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Collective>>> CreateCollectives(
    const std::vector<int>& devices, CollectiveKind kind) {
  if (devices.empty()) {
    return absl::InvalidArgumentError("CreateCollectives: no devices; give one per rank");
  }
  for (int device : devices) TROUPE_RETURN_IF_ERROR(Device::CheckIndex(device));
  const bool distinct = std::set<int>(devices.begin(), devices.end()).size() == devices.size();
  if (kind == CollectiveKind::kNccl && !distinct) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CreateCollectives: NCCL takes one rank per GPU, but devices ", DeviceList(devices),
        " repeat one; give each rank its own GPU, or use the in-process collective"));
  }
  const bool nccl =
      devices.size() > 1 && (kind == CollectiveKind::kNccl ||
                             (kind == CollectiveKind::kAuto && distinct));
  return nccl ? CreateNccl(devices) : CreateInProcess(devices);
}

void DestroyCollectives(std::vector<std::unique_ptr<Collective>> group) {
  std::vector<std::thread> threads;
  for (std::unique_ptr<Collective>& rank : group) {
    threads.emplace_back([&rank] { rank.reset(); });
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace troupe::gpu
