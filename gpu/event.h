// Event: a CUDA event on one device, to order work across streams and to time it.
//
// Record marks a point in a stream's work; the event completes when the stream gets there.
// Another stream can wait for that point (EnqueueWait), the host can wait for it (Synchronize),
// and two recorded points of one device give the time between them.
//
//   Event start = *Event::Create(/*device=*/0);
//   Event stop = *Event::Create(/*device=*/0);
//   start.Record(stream);  ... enqueue work ...;  stop.Record(stream);
//   absl::StatusOr<float> ms = Event::ElapsedMilliseconds(start, stop);
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/stream.h"

namespace troupe::gpu {

class Event {
 public:
  // Create makes an event on `device`. Events without timing are cheaper to record and wait
  // for; ElapsedMilliseconds refuses them.
  static absl::StatusOr<Event> Create(int device, bool timing = true);

  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  // Record captures the work enqueued on `stream` so far; `stream` must be on the event's
  // device. Recording again moves the event to the new point.
  absl::Status Record(const Stream& stream);

  // Synchronize blocks until the recorded work is done (at once if never recorded).
  absl::Status Synchronize() const;

  // IsDone reports, without blocking, whether the recorded work is done.
  absl::StatusOr<bool> IsDone() const;

  // EnqueueWait makes work enqueued on `stream` after this call wait until the event completes.
  // `stream` may be on another device: this is how one device waits for another's result.
  absl::Status EnqueueWait(const Stream& stream) const;

  // ElapsedMilliseconds waits for both events and returns the time from `start` to `end`. Both
  // must be recorded, on one device, created with timing.
  static absl::StatusOr<float> ElapsedMilliseconds(const Event& start, const Event& end);

  int device() const { return device_; }
  bool timing() const { return timing_; }
  bool recorded() const { return recorded_; }
  // raw is the cudaEvent_t, erased so that this header stays CUDA-free.
  void* raw() const { return event_; }

 private:
  Event(int device, bool timing, void* event) : device_(device), timing_(timing), event_(event) {}
  absl::Status CheckUsable(const char* user) const;
  void Destroy();

  int device_ = -1;
  bool timing_ = false;
  bool recorded_ = false;
  void* event_ = nullptr;
};

}  // namespace troupe::gpu
