#include "gpu/memory_pool.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace troupe::gpu {
namespace {

constexpr size_t kMinGranularity = 256;  // cudaMalloc's alignment.

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

absl::Status CheckOptions(const MemoryPoolOptions& options) {
  if (!IsPowerOfTwo(options.small_granularity) || options.small_granularity < kMinGranularity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MemoryPoolOptions: small_granularity = ", options.small_granularity,
        " must be a power of two of at least ", kMinGranularity, " (cudaMalloc's alignment)"));
  }
  if (!IsPowerOfTwo(options.large_threshold) ||
      options.large_threshold < options.small_granularity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MemoryPoolOptions: large_threshold = ", options.large_threshold,
        " must be a power of two of at least small_granularity (", options.small_granularity, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<size_t> SizeClass(size_t bytes, const MemoryPoolOptions& options) {
  if (bytes == 0) return absl::InvalidArgumentError("SizeClass: 0 bytes has no size class");
  if (bytes <= options.large_threshold) {
    const size_t granularity = options.small_granularity;
    return (bytes + granularity - 1) / granularity * granularity;
  }
  constexpr size_t kLargestClass = size_t{1} << (std::numeric_limits<size_t>::digits - 1);
  if (bytes > kLargestClass) {
    return absl::InvalidArgumentError(absl::StrCat("SizeClass: ", bytes,
                                                   " bytes is more than the largest size class (",
                                                   kLargestClass, " bytes)"));
  }
  size_t size_class = options.large_threshold;
  while (size_class < bytes) size_class <<= 1;
  return size_class;
}

std::string MemoryPoolStats::ToString() const {
  return absl::StrCat("bytes_in_use=", bytes_in_use, " bytes_cached=", bytes_cached,
                      " peak_bytes_in_use=", peak_bytes_in_use, " allocations=", allocations,
                      " cache_hits=", cache_hits, " cache_misses=", cache_misses,
                      " raw_allocations=", raw_allocations, " raw_frees=", raw_frees);
}

// --- PooledBuffer --------------------------------------------------------------------------------

PooledBuffer::PooledBuffer(PooledBuffer&& other) noexcept
    : pool_(std::move(other.pool_)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      device_(std::exchange(other.device_, -1)) {}

PooledBuffer& PooledBuffer::operator=(PooledBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    pool_ = std::move(other.pool_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

PooledBuffer::~PooledBuffer() { Reset(); }

void PooledBuffer::Reset() {
  if (pool_ != nullptr && data_ != nullptr) pool_->Return(data_, capacity_, device_);
  pool_.reset();
  data_ = nullptr;
  bytes_ = 0;
  capacity_ = 0;
  device_ = -1;
}

// --- MemoryPool ----------------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<MemoryPool>> MemoryPool::Create(
    std::unique_ptr<RawAllocator> allocator, MemoryPoolOptions options) {
  if (allocator == nullptr) {
    return absl::InvalidArgumentError(
        "MemoryPool::Create: the RawAllocator is null; pass one (CudaAllocator on GPUs)");
  }
  if (absl::Status valid = CheckOptions(options); !valid.ok()) return valid;
  // Not make_shared: the constructor is private.
  return std::shared_ptr<MemoryPool>(new MemoryPool(std::move(allocator), options));
}

MemoryPool::~MemoryPool() {
  absl::MutexLock lock(&mutex_);
  // Nothing can act on a failure here; Release() reports them to a caller who can.
  ReleaseLocked(std::nullopt).IgnoreError();
}

absl::StatusOr<PooledBuffer> MemoryPool::Allocate(size_t bytes, int device) {
  if (bytes == 0) return PooledBuffer();
  if (device < 0) {
    return absl::InvalidArgumentError(absl::StrCat("MemoryPool::Allocate: cuda:", device,
                                                   " is not a device index; use 0 or more"));
  }
  absl::StatusOr<size_t> size_class = SizeClass(bytes, options_);
  if (!size_class.ok()) return size_class.status();

  absl::MutexLock lock(&mutex_);
  void* data = nullptr;
  auto cached = cache_.find({device, *size_class});
  if (cached != cache_.end() && !cached->second.empty()) {
    data = cached->second.back();
    cached->second.pop_back();
    stats_.bytes_cached -= *size_class;
    ++stats_.cache_hits;
  } else {
    ++stats_.cache_misses;
    absl::StatusOr<void*> fresh = AllocateRaw(bytes, *size_class, device);
    if (!fresh.ok()) return fresh.status();
    data = *fresh;
  }
  ++stats_.allocations;
  stats_.bytes_in_use += *size_class;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return PooledBuffer(shared_from_this(), data, bytes, *size_class, device);
}

absl::StatusOr<void*> MemoryPool::AllocateRaw(size_t bytes, size_t size_class, int device) {
  ++stats_.raw_allocations;
  absl::StatusOr<void*> data = allocator_->Allocate(size_class, device);
  if (data.ok() || !absl::IsResourceExhausted(data.status())) return data;

  // Out of memory: the cache may hold this device's memory in other size classes.
  absl::Status released = ReleaseLocked(device);
  if (!released.ok()) return released;
  ++stats_.raw_allocations;
  data = allocator_->Allocate(size_class, device);
  if (data.ok() || !absl::IsResourceExhausted(data.status())) return data;
  return absl::ResourceExhaustedError(
      absl::StrCat("MemoryPool: cannot allocate ", bytes, " bytes (size class ", size_class,
                   ") on cuda:", device, ", even after freeing the pool's cache of that device (",
                   data.status().message(), "); pool: ", stats_.ToString(),
                   ". Free buffers the program still holds, or make the batch or model smaller"));
}

absl::Status MemoryPool::Release() {
  absl::MutexLock lock(&mutex_);
  return ReleaseLocked(std::nullopt);
}

absl::Status MemoryPool::Release(int device) {
  absl::MutexLock lock(&mutex_);
  return ReleaseLocked(device);
}

absl::Status MemoryPool::ReleaseLocked(std::optional<int> device) {
  absl::Status first_error = absl::OkStatus();
  for (auto it = cache_.begin(); it != cache_.end();) {
    const auto& [block_device, size_class] = it->first;
    if (device.has_value() && block_device != *device) {
      ++it;
      continue;
    }
    for (void* data : it->second) {
      ++stats_.raw_frees;
      // A block whose Free failed is forgotten all the same: its state is unknown, and keeping
      // it would hand out memory that may be gone.
      stats_.bytes_cached -= size_class;
      absl::Status freed = allocator_->Free(data, block_device);
      if (first_error.ok() && !freed.ok()) first_error = freed;
    }
    it = cache_.erase(it);
  }
  return first_error;
}

void MemoryPool::Return(void* data, size_t size_class, int device) {
  absl::MutexLock lock(&mutex_);
  cache_[{device, size_class}].push_back(data);
  stats_.bytes_in_use -= size_class;
  stats_.bytes_cached += size_class;
}

MemoryPoolStats MemoryPool::Stats() const {
  absl::MutexLock lock(&mutex_);
  return stats_;
}

}  // namespace troupe::gpu
