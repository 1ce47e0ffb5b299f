// Stream: an owned CUDA stream on one device. Kernels in gpu/ take a Stream& and enqueue on it;
// nothing in this header needs CUDA's headers.
//
//   absl::StatusOr<Stream> stream = Stream::Create(/*device=*/0);
//   ... LayerNorm(..., *stream);
//   absl::Status done = stream->Synchronize();
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace troupe::gpu {

class Stream {
 public:
  // Create makes a non-blocking stream on `device` (and makes `device` current).
  static absl::StatusOr<Stream> Create(int device);

  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  // Synchronize waits for all work on the stream; the status reports any asynchronous error.
  absl::Status Synchronize() const;

  int device() const { return device_; }
  // raw is the cudaStream_t, erased so that this header stays CUDA-free.
  void* raw() const { return stream_; }

 private:
  Stream(int device, void* stream) : device_(device), stream_(stream) {}
  int device_ = -1;
  void* stream_ = nullptr;
};

// CheckStreamFor returns OK when `stream` can take work for `device`: it was not moved from (a
// moved-from Stream's raw() is null, which CUDA would read as the legacy default stream) and it
// was created on `device`. `user` names the caller in the error.
absl::Status CheckStreamFor(const Stream& stream, int device, absl::string_view user);

}  // namespace troupe::gpu
