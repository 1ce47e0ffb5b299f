// MemoryPool: a caching allocator for device memory, with the caching policy apart from CUDA.
//
// cudaMalloc and cudaFree are slow (cudaFree synchronizes the device), so the pool keeps freed
// blocks, per device and size class, and hands them out again. Requests are rounded up to a
// size class so that a freed block fits later requests of about the same size:
//   - up to `large_threshold` (1 MiB): the next multiple of `small_granularity` (512 bytes), so
//     small blocks waste less than 512 bytes and keep cudaMalloc's 256-byte alignment;
//   - above: the next power of two. At most half a block is waste, but there are few classes
//     (one per doubling), so a block freed by one step fits the same tensor of the next step.
// A cached block is reused only for a request of the same class on the same device.
//
// The pool does not track streams: a block goes back to the cache as soon as its PooledBuffer is
// destroyed, and the next Allocate may hand it out at once. Destroy a PooledBuffer only after
// the work that uses it has finished, or keep all users of the pool's memory on one stream
// (which orders them).
//
// The policy is tested on the CPU with a fake RawAllocator; CudaAllocator (cuda_allocator.h) is
// the one for GPUs.
//
//   std::shared_ptr<MemoryPool> pool = *CreateCudaMemoryPool();
//   absl::StatusOr<PooledBuffer> activations = pool->Allocate(bytes, /*device=*/0);
//   ... use activations->data() ...
//   // Destroying the PooledBuffer returns its block to the cache; pool->Release() frees the cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace troupe::gpu {

// RawAllocator is where a MemoryPool's memory comes from (cudaMalloc/cudaFree on GPUs).
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  // Allocate returns `bytes` of memory on `device`; ResourceExhausted means out of memory (the
  // pool then frees its cache and tries once more), any other error is passed on.
  virtual absl::StatusOr<void*> Allocate(size_t bytes, int device) = 0;
  // Free returns memory that Allocate gave for `device`.
  virtual absl::Status Free(void* data, int device) = 0;
};

// MemoryPoolOptions are the size-class policy (see the file comment).
struct MemoryPoolOptions {
  // Small requests round up to a multiple of this; a power of two, at least 256 (cudaMalloc's
  // alignment, which cuBLAS and vectorized kernels rely on).
  size_t small_granularity = 512;
  // Requests above this round up to a power of two; a power of two and a multiple of
  // `small_granularity`. 1 MiB as in PyTorch's caching allocator (its small/large boundary).
  size_t large_threshold = size_t{1} << 20;
};

// SizeClass returns the block size a request of `bytes` (> 0) gets; InvalidArgument if rounding
// up would overflow.
absl::StatusOr<size_t> SizeClass(size_t bytes, const MemoryPoolOptions& options);

// MemoryPoolStats count over the pool's lifetime (bytes in size-class units, not requested).
struct MemoryPoolStats {
  size_t bytes_in_use = 0;       // Blocks handed out now.
  size_t bytes_cached = 0;       // Free blocks kept for reuse.
  size_t peak_bytes_in_use = 0;  // Highest bytes_in_use so far.
  uint64_t allocations = 0;      // Allocate calls that returned memory.
  uint64_t cache_hits = 0;       // ... served from the cache.
  uint64_t cache_misses = 0;     // ... that needed the RawAllocator.
  uint64_t raw_allocations = 0;  // RawAllocator::Allocate (cudaMalloc) calls, failed ones too.
  uint64_t raw_frees = 0;        // RawAllocator::Free (cudaFree) calls.

  // ToString renders every field as `name=value`, for logs and error messages.
  std::string ToString() const;
};

class MemoryPool;

// PooledBuffer is a block of a MemoryPool, handed out by Allocate. Destroying it (or Reset)
// returns the block to the pool's cache. It keeps its pool alive.
class PooledBuffer {
 public:
  PooledBuffer() = default;  // Empty: data() is null.
  PooledBuffer(PooledBuffer&& other) noexcept;
  PooledBuffer& operator=(PooledBuffer&& other) noexcept;
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  ~PooledBuffer();

  // Reset returns the block now; the buffer is empty afterwards.
  void Reset();

  void* data() const { return data_; }
  // bytes is what was asked for; capacity (the size class) is what the block holds.
  size_t bytes() const { return bytes_; }
  size_t capacity() const { return capacity_; }
  int device() const { return device_; }

 private:
  friend class MemoryPool;
  PooledBuffer(std::shared_ptr<MemoryPool> pool, void* data, size_t bytes, size_t capacity,
               int device)
      : pool_(std::move(pool)), data_(data), bytes_(bytes), capacity_(capacity), device_(device) {}

  std::shared_ptr<MemoryPool> pool_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  size_t capacity_ = 0;
  int device_ = -1;
};

// MemoryPool is thread-safe. It calls the RawAllocator under its lock, so allocations that miss
// the cache are serialized (as cudaMalloc largely is anyway).
class MemoryPool : public std::enable_shared_from_this<MemoryPool> {
 public:
  // Create makes a pool over `allocator` (not null) after checking `options`.
  static absl::StatusOr<std::shared_ptr<MemoryPool>> Create(std::unique_ptr<RawAllocator> allocator,
                                                            MemoryPoolOptions options = {});

  // The destructor frees the cache. No block is out then: each PooledBuffer holds the pool.
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // Allocate returns a block of at least `bytes` on `device`, from the cache if it has one of
  // the size class, else from the RawAllocator. 0 bytes gives an empty PooledBuffer. When the
  // RawAllocator is out of memory the pool frees its cache on `device` and tries once more; if
  // that fails too, the ResourceExhausted error names the size, the device and the statistics.
  absl::StatusOr<PooledBuffer> Allocate(size_t bytes, int device);

  // Release frees every cached block (of all devices, or of `device`) with the RawAllocator.
  // Blocks in use are not touched. It frees all it can and returns the first error.
  absl::Status Release();
  absl::Status Release(int device);

  MemoryPoolStats Stats() const;
  const MemoryPoolOptions& options() const { return options_; }

 private:
  friend class PooledBuffer;
  // Blocks are cached by (device, size class).
  using CacheKey = std::pair<int, size_t>;

  MemoryPool(std::unique_ptr<RawAllocator> allocator, MemoryPoolOptions options)
      : allocator_(std::move(allocator)), options_(options) {}

  // AllocateRaw gets a block from the RawAllocator, freeing the device's cache and retrying once
  // when it is out of memory.
  absl::StatusOr<void*> AllocateRaw(size_t bytes, size_t size_class, int device)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // ReleaseLocked frees the cached blocks of `device`, or of every device when it is nullopt.
  absl::Status ReleaseLocked(std::optional<int> device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Return takes a block back from a PooledBuffer into the cache.
  void Return(void* data, size_t size_class, int device);

  const std::unique_ptr<RawAllocator> allocator_;
  const MemoryPoolOptions options_;
  mutable absl::Mutex mutex_;
  std::map<CacheKey, std::vector<void*>> cache_ ABSL_GUARDED_BY(mutex_);
  MemoryPoolStats stats_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace troupe::gpu
