#include "gpu/event.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace {

cudaEvent_t Native(void* event) { return static_cast<cudaEvent_t>(event); }

}  // namespace

absl::StatusOr<Event> Event::Create(int device, bool timing) {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  cudaEvent_t event = nullptr;
  const unsigned int flags = timing ? cudaEventDefault : cudaEventDisableTiming;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, flags), device);
  return Event(device, timing, event);
}

Event::Event(Event&& other) noexcept
    : device_(other.device_),
      timing_(other.timing_),
      recorded_(std::exchange(other.recorded_, false)),
      event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    Destroy();
    device_ = other.device_;
    timing_ = other.timing_;
    recorded_ = std::exchange(other.recorded_, false);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

Event::~Event() { Destroy(); }

void Event::Destroy() {
  // cudaEventDestroy does not need the event's device to be current, and returns at once even
  // when the recorded work is still running (CUDA releases the event once it completes).
  if (event_ != nullptr) cudaEventDestroy(Native(event_));
  event_ = nullptr;
}

absl::Status Event::CheckUsable(const char* user) const {
  if (event_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(user, ": the Event was moved from; use the Event it was moved to"));
  }
  return absl::OkStatus();
}

absl::Status Event::Record(const Stream& stream) {
  if (absl::Status usable = CheckUsable("Event::Record"); !usable.ok()) return usable;
  if (absl::Status valid = CheckStreamFor(stream, device_, "Event::Record"); !valid.ok()) {
    return valid;
  }
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaEventRecord(Native(event_), static_cast<cudaStream_t>(stream.raw())), device_);
  recorded_ = true;
  return absl::OkStatus();
}

absl::Status Event::Synchronize() const {
  if (absl::Status usable = CheckUsable("Event::Synchronize"); !usable.ok()) return usable;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(Native(event_)), device_);
  return absl::OkStatus();
}

absl::StatusOr<bool> Event::IsDone() const {
  if (absl::Status usable = CheckUsable("Event::IsDone"); !usable.ok()) return usable;
  const cudaError_t code = cudaEventQuery(Native(event_));
  if (code == cudaErrorNotReady) return false;  // Not an error: the answer "not yet".
  if (code != cudaSuccess) return internal::CudaStatus(code, "cudaEventQuery", device_);
  return true;
}

absl::Status Event::EnqueueWait(const Stream& stream) const {
  if (absl::Status usable = CheckUsable("Event::EnqueueWait"); !usable.ok()) return usable;
  // Any device's stream may wait: only a moved-from Stream is refused.
  if (absl::Status valid = CheckStreamFor(stream, stream.device(), "Event::EnqueueWait");
      !valid.ok()) {
    return valid;
  }
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaStreamWaitEvent(static_cast<cudaStream_t>(stream.raw()), Native(event_), 0),
      stream.device());
  return absl::OkStatus();
}

absl::StatusOr<float> Event::ElapsedMilliseconds(const Event& start, const Event& end) {
  constexpr char kUser[] = "Event::ElapsedMilliseconds";
  for (const Event* event : {&start, &end}) {
    if (absl::Status usable = event->CheckUsable(kUser); !usable.ok()) return usable;
  }
  if (!start.timing_ || !end.timing_) {
    return absl::InvalidArgumentError(absl::StrCat(
        kUser, ": the ", start.timing_ ? "end" : "start",
        " event was created without timing; create both with Event::Create(device, true)"));
  }
  if (start.device_ != end.device_) {
    return absl::InvalidArgumentError(absl::StrCat(kUser, ": start is on cuda:", start.device_,
                                                   " and end on cuda:", end.device_,
                                                   "; time two events of one device"));
  }
  if (!start.recorded_ || !end.recorded_) {
    return absl::FailedPreconditionError(
        absl::StrCat(kUser, ": the ", start.recorded_ ? "end" : "start",
                     " event was never recorded; Record both on a stream first"));
  }
  // cudaEventElapsedTime fails with cudaErrorNotReady unless both events completed.
  if (absl::Status done = start.Synchronize(); !done.ok()) return done;
  if (absl::Status done = end.Synchronize(); !done.ok()) return done;
  float milliseconds = 0;
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaEventElapsedTime(&milliseconds, Native(start.event_), Native(end.event_)), start.device_);
  return milliseconds;
}

}  // namespace troupe::gpu
