#include "serving/placement/latency_model.h"

#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "serving/model/config.h"
#include "serving/placement/profile.h"

namespace troupe::serving::placement {
namespace {

model::ModelConfig Opt13b() {
  absl::StatusOr<model::ModelConfig> config = model::ModelPreset("opt-13b");
  EXPECT_TRUE(config.ok());
  return *config;
}

// A profile drawn exactly from known coefficients, so that the fit must recover them.
Profile SyntheticProfile(const model::ModelConfig& config, const TensorParallelFit& truth, int tp) {
  FittedLatencyModel model(config, {truth});
  absl::StatusOr<std::unique_ptr<StepTimeModel>> step = model.For(tp, 1);
  EXPECT_TRUE(step.ok());
  Profile profile{config.name, "synthetic", "fp16", {}};
  for (int batch : {1, 2, 4, 8}) {
    for (int length : {32, 128, 512, 1024, 2000}) {
      if (batch * length > 8192) continue;
      const int64_t t = int64_t{batch} * length, t2 = int64_t{batch} * length * length;
      profile.samples.push_back(
          {Phase::kPrefill, tp, batch, t, t2, (*step)->PrefillSeconds(batch, t, t2)});
    }
  }
  for (int batch : {1, 2, 4, 8, 16, 32, 64, 96, 128, 192}) {
    for (int context : {128, 512, 1900}) {
      const int64_t t = int64_t{batch} * context;
      profile.samples.push_back(
          {Phase::kDecode, tp, batch, t, 0, (*step)->DecodeSeconds(batch, t)});
    }
  }
  return profile;
}

TensorParallelFit Truth(int tp) {
  TensorParallelFit truth;
  truth.tensor_parallel = tp;
  truth.prefill = {2.0e-15, 3.0e-13, 1.0e-4};
  truth.decode_large = {1.5e-15, 2.0e-12, 4.0e-4};
  return truth;
}

TEST(FittedLatencyModelTest, RecoversTheCoefficientsOfAnExactProfile) {
  const model::ModelConfig config = Opt13b();
  const TensorParallelFit truth = Truth(1);
  absl::StatusOr<FittedLatencyModel> fitted =
      FittedLatencyModel::Fit(SyntheticProfile(config, truth, 1), config);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  ASSERT_EQ(fitted->fits().size(), 1u);
  const TensorParallelFit& fit = fitted->fits()[0];
  EXPECT_NEAR(fit.prefill.c1, truth.prefill.c1, 1e-6 * truth.prefill.c1);
  EXPECT_NEAR(fit.prefill.c2, truth.prefill.c2, 1e-6 * truth.prefill.c2);
  EXPECT_NEAR(fit.prefill.c3, truth.prefill.c3, 1e-6 * truth.prefill.c3);
  EXPECT_EQ(fit.decode_threshold, 0) << "one piece fits exactly; no split is needed";
  EXPECT_NEAR(fit.decode_large.c4, truth.decode_large.c4, 1e-6 * truth.decode_large.c4);
  EXPECT_NEAR(fit.decode_large.c5, truth.decode_large.c5, 1e-6 * truth.decode_large.c5);
  EXPECT_NEAR(fit.decode_large.c6, truth.decode_large.c6, 1e-6 * truth.decode_large.c6);
  EXPECT_LT(fit.prefill_error.max_relative, 1e-9);
  EXPECT_LT(fit.decode_error.max_relative, 1e-9);
  EXPECT_TRUE(absl::StrContains(fitted->Report(), "prefill"));
}

TEST(FittedLatencyModelTest, SplitsDecodeWhereTheDataHaveAKnee) {
  const model::ModelConfig config = Opt13b();
  TensorParallelFit truth = Truth(1);
  truth.decode_threshold = 96;  // DistServe's knee is at about 95
  truth.decode_small = {0.2e-15, 2.0e-12, 4.0e-4};
  truth.decode_large = {3.0e-15, 2.0e-12, 1.0e-4};
  absl::StatusOr<FittedLatencyModel> fitted =
      FittedLatencyModel::Fit(SyntheticProfile(config, truth, 1), config);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  const TensorParallelFit& fit = fitted->fits()[0];
  EXPECT_EQ(fit.decode_threshold, 96);
  EXPECT_LT(fit.decode_error.max_relative, 1e-6);
  EXPECT_NEAR(fit.decode_small.c4, truth.decode_small.c4, 1e-6 * truth.decode_small.c4);
  EXPECT_NEAR(fit.decode_large.c4, truth.decode_large.c4, 1e-6 * truth.decode_large.c4);
}

TEST(FittedLatencyModelTest, NoisyProfileFitsWithinTheNoise) {
  const model::ModelConfig config = Opt13b();
  Profile profile = SyntheticProfile(config, Truth(2), 2);
  // ±3% alternating noise: the relative error of the fit stays about that.
  for (size_t i = 0; i < profile.samples.size(); ++i) {
    profile.samples[i].seconds *= i % 2 == 0 ? 1.03 : 0.97;
  }
  absl::StatusOr<FittedLatencyModel> fitted = FittedLatencyModel::Fit(profile, config);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  const TensorParallelFit& fit = fitted->fits()[0];
  EXPECT_EQ(fit.tensor_parallel, 2);
  EXPECT_LT(fit.prefill_error.mean_relative, 0.04);
  EXPECT_LT(fit.decode_error.mean_relative, 0.04);
  EXPECT_LT(fit.prefill_error.max_relative, 0.08);
}

TEST(FittedLatencyModelTest, CoefficientsNeverComeOutNegative) {
  const model::ModelConfig config = Opt13b();
  // Times that fall with the batch would want a negative coefficient: the fit drops that term.
  Profile profile{config.name, "cpu", "fp32", {}};
  for (int batch : {1, 2, 4}) {
    for (int length : {64, 256, 1024}) {
      const int64_t t = int64_t{batch} * length;
      profile.samples.push_back({Phase::kPrefill, 1, batch, t, t * length, 0.1 + 1e-5 * t});
      profile.samples.push_back({Phase::kDecode, 1, batch, t, 0, 0.05 / batch + 1e-7 * t});
    }
  }
  absl::StatusOr<FittedLatencyModel> fitted = FittedLatencyModel::Fit(profile, config);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  for (const TensorParallelFit& fit : fitted->fits()) {
    for (double c :
         {fit.prefill.c1, fit.prefill.c2, fit.prefill.c3, fit.decode_large.c4, fit.decode_large.c5,
          fit.decode_large.c6, fit.decode_small.c4, fit.decode_small.c5, fit.decode_small.c6}) {
      EXPECT_GE(c, 0);
    }
  }
}

TEST(FittedLatencyModelTest, UnprofiledDegreesScaleFromTp1OrAreNamed) {
  const model::ModelConfig config = Opt13b();
  absl::StatusOr<FittedLatencyModel> fitted =
      FittedLatencyModel::Fit(SyntheticProfile(config, Truth(1), 1), config);
  ASSERT_TRUE(fitted.ok());
  absl::StatusOr<std::unique_ptr<StepTimeModel>> tp1 = fitted->For(1, 1);
  absl::StatusOr<std::unique_ptr<StepTimeModel>> tp4 = fitted->For(4, 1);
  ASSERT_TRUE(tp1.ok() && tp4.ok());
  // Compute terms divide by tp, the constant stays.
  const double one = (*tp1)->PrefillSeconds(1, 2048, 2048 * 2048);
  const double four = (*tp4)->PrefillSeconds(1, 2048, 2048 * 2048);
  EXPECT_LT(four, one / 3);
  EXPECT_GT(four, one / 4);
  EXPECT_TRUE(absl::StrContains(fitted->Describe(), "scaled from TP1"));

  LatencyModelOptions strict;
  strict.scale_unprofiled_tp = false;
  absl::StatusOr<FittedLatencyModel> exact =
      FittedLatencyModel::Fit(SyntheticProfile(config, Truth(1), 1), config, strict);
  ASSERT_TRUE(exact.ok());
  absl::StatusOr<std::unique_ptr<StepTimeModel>> missing = exact->For(4, 1);
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "tensor_parallel=4"));
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "profiled: 1"));
  EXPECT_EQ(exact->For(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FittedLatencyModelTest, BadProfilesAreClearErrors) {
  const model::ModelConfig config = Opt13b();
  Profile other{"opt-66b", "x", "fp16", {}};
  absl::StatusOr<FittedLatencyModel> wrong_model = FittedLatencyModel::Fit(other, config);
  ASSERT_FALSE(wrong_model.ok());
  EXPECT_TRUE(absl::StrContains(wrong_model.status().message(), "opt-66b"));

  Profile empty{config.name, "x", "fp16", {}};
  EXPECT_FALSE(FittedLatencyModel::Fit(empty, config).ok());

  Profile few{
      config.name,
      "x",
      "fp16",
      {{Phase::kPrefill, 1, 1, 128, 128 * 128, 0.01}, {Phase::kDecode, 1, 1, 128, 0, 0.01}}};
  absl::StatusOr<FittedLatencyModel> too_few = FittedLatencyModel::Fit(few, config);
  ASSERT_FALSE(too_few.ok());
  EXPECT_TRUE(absl::StrContains(too_few.status().message(), "at least 3"))
      << too_few.status().message();

  Profile flat{config.name, "x", "fp16", {}};
  for (int i = 0; i < 4; ++i) {
    flat.samples.push_back({Phase::kPrefill, 1, 1, 128, 128 * 128, 0.01});
    flat.samples.push_back({Phase::kDecode, 1, 1, 128, 0, 0.01});
  }
  absl::StatusOr<FittedLatencyModel> one_length = FittedLatencyModel::Fit(flat, config);
  ASSERT_FALSE(one_length.ok());
  EXPECT_TRUE(absl::StrContains(one_length.status().message(), "several lengths"));
}

TEST(RooflineModelTest, PresetsAndUnknownNames) {
  for (const std::string& name : GpuPresetNames()) EXPECT_TRUE(GpuPreset(name).ok()) << name;
  absl::StatusOr<GpuSpec> unknown = GpuPreset("v100");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "a100-80gb"));
}

TEST(RooflineModelTest, DecodeIsBoundByTheWeightsAndPrefillByTheFlops) {
  const model::ModelConfig config = Opt13b();
  const GpuSpec a100 = *GpuPreset("a100-80gb");
  RooflineOptions options;
  RooflineModel roofline(config, a100, options);
  std::unique_ptr<StepTimeModel> tp1 = *roofline.For(1, 1);
  // A batch-1 decode step reads every weight once: at least weights / (eff · bandwidth).
  const double weights = 2.0 * model::ParameterCount(config);
  const double floor = weights / (options.bandwidth_efficiency * a100.hbm_bytes_per_s);
  const double decode = tp1->DecodeSeconds(1, 512);
  EXPECT_GE(decode, floor);
  EXPECT_LT(decode, 1.1 * floor);
  // A 2048-token prefill is compute-bound: about 2 FLOPs per weight per token.
  const double prefill = tp1->PrefillSeconds(1, 2048, 2048 * 2048);
  const double flops = 2.0 * model::ParameterCount(config) * 2048;
  EXPECT_GT(prefill, flops / (options.flops_efficiency * a100.dense_fp16_flops));
  EXPECT_LT(prefill, 1.3 * flops / (options.flops_efficiency * a100.dense_fp16_flops));
  // Longer prompts cost more, superlinearly through attention.
  EXPECT_GT(tp1->PrefillSeconds(1, 1024, 1024 * 1024),
            1.9 * tp1->PrefillSeconds(1, 512, 512 * 512));
  // Tensor parallelism divides the work but adds all-reduces: faster, not tp times faster.
  std::unique_ptr<StepTimeModel> tp4 = *roofline.For(4, 1);
  EXPECT_LT(tp4->DecodeSeconds(1, 512), decode / 2);
  EXPECT_GT(tp4->DecodeSeconds(1, 512), decode / 4);
  // Decode grows with the batch only once the GEMMs become compute-bound.
  EXPECT_LT(tp1->DecodeSeconds(8, 8 * 512), 1.2 * decode);
  EXPECT_GT(tp1->DecodeSeconds(512, 512 * 512), 2 * decode);
  EXPECT_TRUE(absl::StrContains(roofline.Describe(), "a100-80gb"));
}

TEST(RooflineModelTest, PerStageTimesDoNotDependOnPipelineDepth) {
  const model::ModelConfig config = Opt13b();
  RooflineModel roofline(config, *GpuPreset("h200"));
  std::unique_ptr<StepTimeModel> pp1 = *roofline.For(2, 1);
  std::unique_ptr<StepTimeModel> pp4 = *roofline.For(2, 4);
  EXPECT_DOUBLE_EQ(pp1->DecodeSeconds(16, 16 * 300), pp4->DecodeSeconds(16, 16 * 300));
  EXPECT_EQ(roofline.For(1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int> lengths = {100, 200};
  EXPECT_DOUBLE_EQ(pp1->PrefillSecondsOf(lengths),
                   pp1->PrefillSeconds(2, 300, 100 * 100 + 200 * 200));
}

}  // namespace
}  // namespace troupe::serving::placement
