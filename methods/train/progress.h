// Progress and EpochLog: what a training run reports, in plain types (no LibTorch), so that
// actors and tools that only watch training need not include the trainer.
//
//   trainer->on_progress = [](const Progress& p) { Show(p.step, p.total_steps, p.eta_seconds); };
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace troupe::methods::train {

// EpochLog is one line of the logs.
struct EpochLog {
  int64_t epoch = 0;  // 1-based: the epoch just finished
  int64_t step = 0;   // steps done so far
  double learning_rate = 0;
  double train_loss = 0;  // mean over the epoch's images
  double seconds = 0;     // the epoch's training time (not evaluation)
  double images_per_second = 0;
  // Test accuracy of each head whose size is the dataset's number of classes.
  std::map<std::string, double> accuracy;
};

// Progress is what the progress line shows; the trainer passes it to `on_progress` too.
struct Progress {
  int64_t epoch = 0;  // 0-based, the epoch in progress
  int64_t epochs = 0;
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0;  // mean of the epoch so far
  double learning_rate = 0;
  double images_per_second = 0;
  double eta_seconds = 0;
};

}  // namespace troupe::methods::train
