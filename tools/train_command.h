// `troupe train <method>`: trains a model on Fashion-MNIST with one of the methods on the
// runtime's trainer (methods/train), as a job of a trainer actor on a CPU worker.
//
//   troupe train supervised --architecture=small_cnn --epochs=5 --logs=/tmp/run
//   troupe train sla --arm=sla_sd --train_images=5000 --epochs=15 --logs=/tmp/sla
//   troupe train supervised --width=32 --save_model=/tmp/teacher.pt      # a DHKD teacher
//   troupe train dhkd --arm=dhkd --teacher=/tmp/teacher.pt --teacher_width=32 --logs=/tmp/kd
//   troupe train sla --help                                               # SLA's flags
//
// Methods: supervised (cross-entropy on one head), sla (methods/sla/sla_recipe.h: baseline, da,
// mt, sla, sla_sd) and dhkd (methods/dhkd/dhkd_recipe.h: ce, kd, bkl, ce_bkl, dhkd). Logs are
// --logs/train_log.csv and .json (test accuracy of each score: SLA's si/ag/sd, the rest main),
// and for DHKD's two-loss arms gradient_cosine.csv (the mechanism test). With --checkpoint a
// run stopped at any point continues with --resume; --save_model writes the trained model.
#pragma once

namespace troupe {

// RunTrain parses the command line itself (so that `troupe train METHOD --help` lists that
// method's flags), trains and returns the process's exit code; errors name the flag and the fix.
int RunTrain(int argc, char** argv);

}  // namespace troupe
