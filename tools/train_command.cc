// The one translation unit of tools/ that includes LibTorch (through the trainer and the
// methods' recipes).
#include "tools/train_command.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "actors/errors.h"
#include "actors/gpu_worker.h"
#include "actors/torch_threads.h"
#include "caf/all.hpp"
#include "methods/data/fashion_mnist.h"
#include "methods/data/partition.h"
#include "methods/dhkd/dhkd_recipe.h"
#include "methods/sla/sla_recipe.h"
#include "methods/train/models.h"
#include "methods/train/trainer.h"
#include "methods/train/trainer_actor.h"
#include "tools/common_flags.h"

ABSL_DECLARE_FLAG(int, torch_threads);

// Every method.
ABSL_FLAG(std::string, data_dir, "",
          "`train`: Fashion-MNIST directory (empty: $TROUPE_FASHION_MNIST or "
          "/usr/share/datasets/fashion-mnist/).");
ABSL_FLAG(int64_t, train_images, 0,
          "`train`: train on a class-balanced subset of this many images, seeded (0: all 60000).");
ABSL_FLAG(int64_t, test_images, 0,
          "`train`: test on a class-balanced subset of this many images (0: all 10000).");
ABSL_FLAG(std::string, architecture, "small_cnn", "`train`: mlp, small_cnn or resnet28.");
ABSL_FLAG(int64_t, width, 16, "`train`: channels of the first convolution (small_cnn, resnet28).");
ABSL_FLAG(int64_t, epochs, 10, "`train`: epochs.");
ABSL_FLAG(int64_t, batch_size, 128, "`train`: training batch size (images, before rotations).");
ABSL_FLAG(bool, augment, true, "`train`: random pad-crop and horizontal flip of training images.");
ABSL_FLAG(int, pad, 2, "`train`: --augment's crop padding in pixels (SLA's notes: 2).");
ABSL_FLAG(double, flip, 0.5, "`train`: --augment's horizontal-flip probability (0: no flips).");
ABSL_FLAG(std::string, optimizer, "sgd", "`train`: sgd (with momentum) or adamw.");
ABSL_FLAG(double, lr, 0.05, "`train`: peak learning rate.");
ABSL_FLAG(double, momentum, 0.9, "`train`: SGD momentum.");
ABSL_FLAG(double, weight_decay, 5e-4, "`train`: weight decay (SGD: L2; AdamW: decoupled).");
ABSL_FLAG(std::string, schedule, "cosine",
          "`train`: constant, step (x step_gamma every step_epochs, or at --milestones) or "
          "cosine.");
ABSL_FLAG(int64_t, step_epochs, 30, "`train`: step schedule: epochs between decays.");
ABSL_FLAG(double, step_gamma, 0.1, "`train`: step schedule: decay factor.");
ABSL_FLAG(std::string, milestones, "",
          "`train`: step schedule: decay at these epochs instead, e.g. 15,23 (SLA's 50% and "
          "75% of 30).");
ABSL_FLAG(int64_t, evaluate_every, 1,
          "`train`: test after every this many epochs (and after the last).");
ABSL_FLAG(std::string, logs, "",
          "`train`: directory for train_log.csv/.json (and DHKD's gradient_cosine.csv).");
ABSL_FLAG(std::string, checkpoint, "", "`train`: checkpoint file, written after every epoch.");
ABSL_FLAG(bool, resume, false, "`train`: continue from --checkpoint when it exists.");
ABSL_FLAG(std::string, save_model, "", "`train`: write the trained model here.");
// SLA and DHKD.
ABSL_FLAG(std::string, arm, "",
          "`train`: the method's arm. sla: baseline, da, mt, sla (scored SI and AG), sla_sd "
          "(default). dhkd: ce, kd, bkl, ce_bkl, dhkd (default).");
// SLA.
ABSL_FLAG(int64_t, transforms, 4, "`train sla`: M, the rotations: 4 (quarter turns) or 2.");
ABSL_FLAG(double, sd_temperature, 1.0, "`train sla`: SLA+SD's distillation temperature.");
ABSL_FLAG(double, sd_ce_weight, 1.0, "`train sla`: SLA+SD's weight of the SD head's CE.");
// DHKD.
ABSL_FLAG(std::string, teacher, "",
          "`train dhkd`: the teacher model file (from `troupe train supervised --save_model`).");
ABSL_FLAG(std::string, teacher_architecture, "small_cnn", "`train dhkd`: the teacher's backbone.");
ABSL_FLAG(int64_t, teacher_width, 32, "`train dhkd`: the teacher's --width.");
ABSL_FLAG(std::string, distill, "bkl_norm",
          "`train dhkd`: the dhkd arm's auxiliary loss: bkl_norm (DHKD) or bkl (plain BinaryKL).");
ABSL_FLAG(bool, align, true, "`train dhkd`: gradient alignment (PCGrad) in the dhkd arm.");
ABSL_FLAG(int64_t, aux_hidden, 0,
          "`train dhkd`: the auxiliary head's hidden width (0: linear; 200: the CIFAR "
          "nonlinear head).");
ABSL_FLAG(double, kd_temperature, 0,
          "`train dhkd`: T of the distillation loss (0: 4 for kd, 2 for the rest).");
ABSL_FLAG(double, ce_weight, 1.0, "`train dhkd`: gamma, the weight of CE on the main head.");
ABSL_FLAG(double, distill_weight, 1.0, "`train dhkd`: alpha, the distillation loss's weight.");
ABSL_FLAG(int64_t, cosine_every, 100,
          "`train dhkd`: log the CE/distillation gradient cosines every this many steps (0: "
          "never; needs --logs).");

namespace troupe {
namespace {

namespace data = methods::data;
namespace train = methods::train;

const std::vector<std::string> kCommonFlags = {
    "data_dir",       "train_images", "test_images",   "architecture", "width",      "epochs",
    "batch_size",     "augment",      "pad",           "flip",         "optimizer",  "lr",
    "momentum",       "weight_decay", "schedule",      "step_epochs",  "step_gamma", "milestones",
    "evaluate_every", "seed",         "torch_threads", "logs",         "checkpoint", "resume",
    "save_model"};

struct Method {
  std::string name;
  std::string summary;
  std::vector<std::string> flags;  // besides kCommonFlags
};

const std::vector<Method>& Methods() {
  static const std::vector<Method> methods = {
      {"supervised", "cross-entropy on one head (baselines, DHKD teachers)", {}},
      {"sla",
       "SLA: self-supervised label augmentation with rotations (Lee et al., ICML 2020); "
       "arms baseline, da, mt, sla (SI and AG), sla_sd",
       {"arm", "transforms", "sd_temperature", "sd_ce_weight"}},
      {"dhkd",
       "Dual-Head KD (Yang et al. 2024): arms ce, kd, bkl, ce_bkl (one head), dhkd (two heads; "
       "--align, --aux_hidden, --distill)",
       {"arm", "teacher", "teacher_architecture", "teacher_width", "distill", "align", "aux_hidden",
        "kd_temperature", "ce_weight", "distill_weight", "cosine_every"}},
  };
  return methods;
}

const Method* FindMethod(const std::string& name) {
  for (const Method& method : Methods()) {
    if (method.name == name) return &method;
  }
  return nullptr;
}

std::string MethodNames() {
  std::vector<std::string> names;
  for (const Method& method : Methods()) names.push_back(method.name);
  return absl::StrJoin(names, ", ");
}

void PrintHelp(const Method& method) {
  std::printf("troupe train %s: %s\n\nFlags (--name=value):\n", method.name.c_str(),
              method.summary.c_str());
  std::vector<std::string> flags = method.flags;
  flags.insert(flags.end(), kCommonFlags.begin(), kCommonFlags.end());
  for (const std::string& name : flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    std::printf("  --%s (default: %s)\n      %s\n", name.c_str(),
                flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue().c_str(),
                flag->Help().c_str());
  }
}

absl::StatusOr<data::Dataset> Load(data::Split split, int64_t images) {
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) dir = data::DefaultFashionMnistDir();
  absl::StatusOr<data::Dataset> dataset = data::LoadFashionMnist(dir, split);
  if (!dataset.ok() || images <= 0 || images >= dataset->size()) return dataset;
  absl::StatusOr<std::vector<int64_t>> subset = data::ClassBalancedSubset(
      dataset->labels, dataset->num_classes, images, absl::GetFlag(FLAGS_seed));
  if (!subset.ok()) return subset.status();
  return data::Select(*dataset, *subset);
}

// ReadModelOptions: a backbone by name and width, with `heads`, validated.
absl::StatusOr<train::ModelOptions> ReadModelOptions(const std::string& architecture, int64_t width,
                                                     std::vector<train::HeadSpec> heads) {
  absl::StatusOr<train::Architecture> parsed = train::ParseArchitecture(architecture);
  if (!parsed.ok()) return parsed.status();
  train::ModelOptions options;
  options.architecture = *parsed;
  options.width = width;
  options.heads = std::move(heads);
  if (absl::Status s = train::ValidateModelOptions(options); !s.ok()) return s;
  return options;
}

absl::StatusOr<train::TrainerOptions> ReadTrainerOptions() {
  train::TrainerOptions options;
  absl::StatusOr<train::OptimizerKind> optimizer =
      train::ParseOptimizer(absl::GetFlag(FLAGS_optimizer));
  if (!optimizer.ok()) return optimizer.status();
  absl::StatusOr<train::ScheduleKind> schedule =
      train::ParseSchedule(absl::GetFlag(FLAGS_schedule));
  if (!schedule.ok()) return schedule.status();
  options.optimizer = *optimizer;
  options.schedule = *schedule;
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.batches.batch_size = absl::GetFlag(FLAGS_batch_size);
  if (absl::GetFlag(FLAGS_augment)) {
    data::AugmentOptions augment;
    augment.pad = absl::GetFlag(FLAGS_pad);
    augment.flip_probability = absl::GetFlag(FLAGS_flip);
    options.batches.augment = augment;
  }
  options.learning_rate = absl::GetFlag(FLAGS_lr);
  options.momentum = absl::GetFlag(FLAGS_momentum);
  options.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  options.step_epochs = absl::GetFlag(FLAGS_step_epochs);
  options.step_gamma = absl::GetFlag(FLAGS_step_gamma);
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_milestones), ',', absl::SkipEmpty())) {
    int64_t epoch = 0;
    if (!absl::SimpleAtoi(part, &epoch)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--milestones=", absl::GetFlag(FLAGS_milestones), ": '", part,
                       "' is not an epoch; give increasing epochs, e.g. --milestones=15,23"));
    }
    options.step_milestones.push_back(epoch);
  }
  options.seed = absl::GetFlag(FLAGS_seed);
  options.evaluate_every_epochs = absl::GetFlag(FLAGS_evaluate_every);
  options.log_dir = absl::GetFlag(FLAGS_logs);
  options.checkpoint_path = absl::GetFlag(FLAGS_checkpoint);
  options.progress_every_steps = 50;
  return options;
}

absl::StatusOr<train::Recipe> SlaRecipe() {
  const std::string name = absl::GetFlag(FLAGS_arm).empty() ? "sla_sd" : absl::GetFlag(FLAGS_arm);
  absl::StatusOr<methods::sla::Arm> arm = methods::sla::ParseArm(name);
  if (!arm.ok()) return arm.status();
  methods::sla::SlaOptions options;
  options.num_transforms = absl::GetFlag(FLAGS_transforms);
  options.distill_temperature = absl::GetFlag(FLAGS_sd_temperature);
  options.distill_ce_weight = absl::GetFlag(FLAGS_sd_ce_weight);
  return methods::sla::MakeRecipe(*arm, 10, options);
}

absl::StatusOr<train::Recipe> DhkdRecipe(const data::Dataset& train_set, bool augmented) {
  namespace dhkd = methods::dhkd;
  const std::string name = absl::GetFlag(FLAGS_arm).empty() ? "dhkd" : absl::GetFlag(FLAGS_arm);
  dhkd::ArmOptions arm;
  absl::StatusOr<dhkd::Arm> parsed = dhkd::ParseArm(name);
  if (!parsed.ok()) return parsed.status();
  arm.arm = *parsed;
  const std::string distill = absl::GetFlag(FLAGS_distill);
  if (distill != "bkl_norm" && distill != "bkl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--distill=", distill, " is not known; use bkl_norm or bkl"));
  }
  arm.dhkd.distill =
      distill == "bkl" ? dhkd::DistillLoss::kBinaryKl : dhkd::DistillLoss::kBinaryKlNorm;
  arm.dhkd.ce_weight = absl::GetFlag(FLAGS_ce_weight);
  arm.dhkd.distill_weight = absl::GetFlag(FLAGS_distill_weight);
  const double temperature = absl::GetFlag(FLAGS_kd_temperature);
  arm.dhkd.temperature = temperature > 0 ? temperature : (arm.arm == dhkd::Arm::kKd ? 4.0 : 2.0);
  arm.align = absl::GetFlag(FLAGS_align);
  arm.aux_hidden = absl::GetFlag(FLAGS_aux_hidden);
  arm.cosine_every = absl::GetFlag(FLAGS_cosine_every);
  if (absl::GetFlag(FLAGS_logs).empty()) {
    arm.cosine_every = 0;
  } else {
    arm.cosine_log = absl::GetFlag(FLAGS_logs) + "/gradient_cosine.csv";
  }
  dhkd::TeacherFn teacher;
  if (arm.arm != dhkd::Arm::kCe) {
    const std::string path = absl::GetFlag(FLAGS_teacher);
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("DHKD arm '", name,
                       "' needs --teacher=<model file>; train one with `troupe train "
                       "supervised --width=32 --save_model=teacher.pt`"));
    }
    absl::StatusOr<train::ModelOptions> teacher_options =
        ReadModelOptions(absl::GetFlag(FLAGS_teacher_architecture),
                         absl::GetFlag(FLAGS_teacher_width), {{"main", 10}});
    if (!teacher_options.ok()) return teacher_options.status();
    absl::StatusOr<train::Classifier> model = train::MakeClassifier(*teacher_options);
    if (!model.ok()) return model.status();
    if (absl::Status s = train::LoadModel(**model, path); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(),
                                                 " (set --teacher_architecture and "
                                                 "--teacher_width to the teacher's)"));
    }
    absl::StatusOr<dhkd::TeacherFn> made =
        dhkd::MakeTeacher(*model, augmented ? nullptr : &train_set);
    if (!made.ok()) return made.status();
    teacher = *std::move(made);
  }
  return dhkd::MakeRecipe(arm, 10, teacher);
}

absl::Status Train(const Method& method) {
  int threads = absl::GetFlag(FLAGS_torch_threads);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (absl::Status s = actors::SetTorchThreads(threads); !s.ok()) return s;
  absl::StatusOr<train::TrainerOptions> options = ReadTrainerOptions();
  if (!options.ok()) return options.status();
  absl::StatusOr<data::Dataset> train_set =
      Load(data::Split::kTrain, absl::GetFlag(FLAGS_train_images));
  if (!train_set.ok()) return train_set.status();
  absl::StatusOr<data::Dataset> test_set =
      Load(data::Split::kTest, absl::GetFlag(FLAGS_test_images));
  if (!test_set.ok()) return test_set.status();

  if (!options->log_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(options->log_dir, error);
    if (error) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot create --logs=", options->log_dir, ": ", error.message()));
    }
  }
  absl::StatusOr<train::Recipe> recipe = train::Recipe{{{"main", 10}}, nullptr, nullptr};
  if (method.name == "sla") recipe = SlaRecipe();
  if (method.name == "dhkd") recipe = DhkdRecipe(*train_set, options->batches.augment.has_value());
  if (!recipe.ok()) return recipe.status();
  absl::StatusOr<train::ModelOptions> read = ReadModelOptions(
      absl::GetFlag(FLAGS_architecture), absl::GetFlag(FLAGS_width), recipe->heads);
  if (!read.ok()) return read.status();
  const train::ModelOptions model_options = *read;
  std::fprintf(
      stderr, "train %s%s: model %s, %lld training and %lld test images, %d threads\n",
      method.name.c_str(),
      absl::GetFlag(FLAGS_arm).empty() ? "" : (" --arm=" + absl::GetFlag(FLAGS_arm)).c_str(),
      train::ModelSpec(model_options).c_str(), static_cast<long long>(train_set->size()),
      static_cast<long long>(test_set->size()), threads);

  // The run is a job of a trainer actor on a CPU worker, as on any node of the runtime.
  caf::actor_system_config config;
  caf::actor_system system(config);
  absl::StatusOr<caf::actor> worker = actors::SpawnGpuWorker(system, {"train", -1, nullptr});
  if (!worker.ok()) return worker.status();
  caf::actor trainer = train::SpawnTrainerActor(system, *worker);
  train::Classifier model{nullptr};
  train::TrainingJob job;
  job.name = method.name;
  job.resume = absl::GetFlag(FLAGS_resume);
  job.checkpoint_path = options->checkpoint_path;
  job.make = [&]() -> absl::StatusOr<std::unique_ptr<train::Trainer>> {
    torch::manual_seed(options->seed);
    absl::StatusOr<train::Classifier> made = train::MakeClassifier(model_options);
    if (!made.ok()) return made.status();
    model = *made;
    return train::Trainer::Create(*made, *train_set, &*test_set, *options, recipe->loss,
                                  recipe->scores);
  };
  absl::StatusOr<train::TrainingResult> result = absl::InternalError("no reply from the trainer");
  {
    caf::scoped_actor self(system);
    self->request(trainer, caf::infinite, std::move(job))
        .receive([&](train::TrainingResult& reply) { result = std::move(reply); },
                 [&](caf::error& error) { result = actors::ToStatus(error); });
  }
  caf::anon_send_exit(trainer, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(*worker, caf::exit_reason::user_shutdown);
  if (!result.ok()) return result.status();
  if (!result->history.empty()) {
    std::printf(
        "%s: test accuracy after %lld epochs: %s\n", method.name.c_str(),
        static_cast<long long>(result->history.back().epoch),
        absl::StrJoin(result->history.back().accuracy, " ", absl::PairFormatter("=")).c_str());
  }
  const std::string save_model = absl::GetFlag(FLAGS_save_model);
  if (!save_model.empty()) {
    if (absl::Status s = train::SaveModel(*model, save_model); !s.ok()) return s;
    std::printf("saved the model to %s\n", save_model.c_str());
  }
  return absl::OkStatus();
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0 ||
        std::strcmp(argv[i], "-help") == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

int RunTrain(int argc, char** argv) {
  // argv: troupe train METHOD [flags]
  const std::string name = argc > 2 ? argv[2] : "";
  const Method* method = FindMethod(name);
  if (WantsHelp(argc, argv)) {
    if (method != nullptr) {
      PrintHelp(*method);
    } else {
      std::printf("troupe train METHOD [--flags]; METHOD is one of: %s\n", MethodNames().c_str());
      for (const Method& m : Methods())
        std::printf("  %-11s %s\n", m.name.c_str(), m.summary.c_str());
      std::printf("`troupe train METHOD --help` lists a method's flags.\n");
    }
    return 0;
  }
  if (method == nullptr) {
    std::fprintf(stderr, "troupe train: %s; use one of: %s (see `troupe train --help`)\n",
                 name.empty() ? "no method given" : ("unknown method \"" + name + "\"").c_str(),
                 MethodNames().c_str());
    return 2;
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 3) {
    std::fprintf(stderr, "troupe train: unexpected argument \"%s\"; flags look like --name=value\n",
                 args[3]);
    return 2;
  }
  absl::Status status = Train(*method);
  if (!status.ok()) {
    std::fprintf(stderr, "troupe train %s: %s\n", method->name.c_str(),
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace troupe
