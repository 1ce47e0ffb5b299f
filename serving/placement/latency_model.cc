#include "serving/placement/latency_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace troupe::serving::placement {
namespace {

constexpr int kTerms = 3;  // every piece of the fitted model has three coefficients
using Features = std::array<double, kTerms>;
using Coefficients = std::array<double, kTerms>;

// The per-layer feature vectors of the Appendix A equations, times the layers (see the header).
Features PrefillFeatures(const model::ModelConfig& c, int block_size, int tp, int64_t tokens,
                         int64_t tokens_squared) {
  const double h = c.hidden_size, m = c.ffn_size, layers = c.num_layers;
  const double t = static_cast<double>(tokens), t2 = static_cast<double>(tokens_squared);
  return {layers * (4 * t * h * h + 2 * t * h * m) / tp,
          layers * 3 * h * t2 / (static_cast<double>(block_size) * tp), layers};
}

Features DecodeFeatures(const model::ModelConfig& c, int tp, int batch, int64_t context_tokens) {
  const double h = c.hidden_size, m = c.ffn_size, layers = c.num_layers;
  return {layers * batch * (4 * h * h + 2 * h * m) / tp,
          layers * 3 * h * static_cast<double>(context_tokens) / tp, layers};
}

double Dot(const Features& x, const Coefficients& c) {
  return x[0] * c[0] + x[1] * c[1] + x[2] * c[2];
}

struct Observation {
  Features x;
  double seconds;
};

// SolveLeastSquares minimizes Σ_i (a_i·c - 1)² over the columns in `use` (the others stay 0),
// by Householder QR on column-normalized rows. False if the used columns are (numerically)
// dependent.
bool SolveLeastSquares(const std::vector<Features>& rows, const std::array<bool, kTerms>& use,
                       Coefficients* out) {
  std::vector<int> cols;
  for (int j = 0; j < kTerms; ++j) {
    if (use[j]) cols.push_back(j);
  }
  const int n = static_cast<int>(rows.size()), k = static_cast<int>(cols.size());
  if (n < k || k == 0) return false;
  // Column scales keep features of very different magnitudes (1e13 and 40) comparable.
  std::vector<double> scale(k, 0);
  for (int j = 0; j < k; ++j) {
    for (int i = 0; i < n; ++i) scale[j] += rows[i][cols[j]] * rows[i][cols[j]];
    scale[j] = std::sqrt(scale[j]);
    if (!(scale[j] > 0)) return false;
  }
  std::vector<double> a(static_cast<size_t>(n) * k), b(n, 1.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < k; ++j) a[i * k + j] = rows[i][cols[j]] / scale[j];
  }
  for (int j = 0; j < k; ++j) {
    double norm = 0;
    for (int i = j; i < n; ++i) norm += a[i * k + j] * a[i * k + j];
    norm = std::sqrt(norm);
    if (norm < 1e-10) return false;
    const double alpha = a[j * k + j] > 0 ? -norm : norm;
    std::vector<double> v(n, 0);
    for (int i = j; i < n; ++i) v[i] = a[i * k + j];
    v[j] -= alpha;
    double vv = 0;
    for (int i = j; i < n; ++i) vv += v[i] * v[i];
    if (vv <= 0) continue;
    for (int col = j; col < k; ++col) {
      double dot = 0;
      for (int i = j; i < n; ++i) dot += v[i] * a[i * k + col];
      for (int i = j; i < n; ++i) a[i * k + col] -= 2 * dot / vv * v[i];
    }
    double dot = 0;
    for (int i = j; i < n; ++i) dot += v[i] * b[i];
    for (int i = j; i < n; ++i) b[i] -= 2 * dot / vv * v[i];
  }
  // R is relative to the largest diagonal: a tiny pivot means dependent columns.
  double largest = 0;
  for (int j = 0; j < k; ++j) largest = std::max(largest, std::abs(a[j * k + j]));
  std::vector<double> solution(k, 0);
  for (int j = k - 1; j >= 0; --j) {
    if (std::abs(a[j * k + j]) < 1e-9 * largest) return false;
    double sum = b[j];
    for (int col = j + 1; col < k; ++col) sum -= a[j * k + col] * solution[col];
    solution[j] = sum / a[j * k + j];
  }
  *out = {0, 0, 0};
  for (int j = 0; j < k; ++j) (*out)[cols[j]] = solution[j] / scale[j];
  return true;
}

double SquaredRelativeError(const std::vector<Observation>& data, const Coefficients& c) {
  double sum = 0;
  for (const Observation& o : data) {
    const double r = (Dot(o.x, c) - o.seconds) / o.seconds;
    sum += r * r;
  }
  return sum;
}

// FitNonNegative is the least-squares fit on relative error with every coefficient >= 0 (a time
// cannot fall as the work grows): the best of the fits on each subset of the terms whose
// coefficients all come out non-negative (exact for three terms). False if no subset can be
// solved.
bool FitNonNegative(const std::vector<Observation>& data, Coefficients* out, double* sse) {
  std::vector<Features> rows;
  rows.reserve(data.size());
  for (const Observation& o : data) {
    Features row;
    for (int j = 0; j < kTerms; ++j) row[j] = o.x[j] / o.seconds;
    rows.push_back(row);
  }
  bool found = false;
  double best = 0;
  for (int mask = (1 << kTerms) - 1; mask >= 1; --mask) {
    std::array<bool, kTerms> use;
    for (int j = 0; j < kTerms; ++j) use[j] = (mask >> j) & 1;
    Coefficients c;
    if (!SolveLeastSquares(rows, use, &c)) continue;
    if (std::any_of(c.begin(), c.end(), [](double v) { return v < 0; })) continue;
    const double error = SquaredRelativeError(data, c);
    if (!found || error < best) {
      found = true;
      best = error;
      *out = c;
    }
  }
  *sse = best;
  return found;
}

FitError Errors(const std::vector<Observation>& data,
                const std::function<double(const Observation&)>& predict) {
  FitError error;
  error.samples = static_cast<int>(data.size());
  for (const Observation& o : data) {
    const double r = std::abs(predict(o) - o.seconds) / o.seconds;
    error.mean_relative += r;
    error.max_relative = std::max(error.max_relative, r);
  }
  if (!data.empty()) error.mean_relative /= data.size();
  return error;
}

// DistinctCount is how many distinct values `key` takes over `data`.
template <typename Key>
size_t DistinctCount(const std::vector<ProfileSample>& data, Key key) {
  std::set<int64_t> values;
  for (const ProfileSample& s : data) values.insert(key(s));
  return values.size();
}

class FittedStepTimeModel : public StepTimeModel {
 public:
  FittedStepTimeModel(const model::ModelConfig& config, const TensorParallelFit& fit, int tp,
                      int block_size)
      : config_(config), fit_(fit), tp_(tp), block_size_(block_size) {}

  double PrefillSeconds(int batch, int64_t tokens, int64_t tokens_squared) const override {
    const Features x = PrefillFeatures(config_, block_size_, tp_, tokens, tokens_squared);
    return Dot(x, {fit_.prefill.c1, fit_.prefill.c2, fit_.prefill.c3});
  }

  double DecodeSeconds(int batch, int64_t context_tokens) const override {
    const DecodeCoefficients& c = fit_.decode_threshold > 0 && batch < fit_.decode_threshold
                                      ? fit_.decode_small
                                      : fit_.decode_large;
    return Dot(DecodeFeatures(config_, tp_, batch, context_tokens), {c.c4, c.c5, c.c6});
  }

 private:
  model::ModelConfig config_;
  TensorParallelFit fit_;
  int tp_;
  int block_size_;
};

absl::Status PhaseFitError(const Profile& profile, Phase phase, int tp, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("the profile of ", profile.model, " on ",
                                                 profile.device, ": its ", PhaseName(phase),
                                                 " samples at tensor_parallel=", tp, " ", what));
}

}  // namespace

double StepTimeModel::PrefillSecondsOf(absl::Span<const int> lengths) const {
  int64_t tokens = 0, tokens_squared = 0;
  for (int l : lengths) {
    tokens += l;
    tokens_squared += static_cast<int64_t>(l) * l;
  }
  return PrefillSeconds(static_cast<int>(lengths.size()), tokens, tokens_squared);
}

absl::StatusOr<FittedLatencyModel> FittedLatencyModel::Fit(const Profile& profile,
                                                           const model::ModelConfig& config,
                                                           const LatencyModelOptions& options) {
  if (profile.model != config.name) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the profile was measured on model \"", profile.model, "\" but the plan is for \"",
        config.name, "\"; profile ", config.name, " or plan for ", profile.model));
  }
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("LatencyModelOptions::block_size is ", options.block_size, "; use 16"));
  }
  std::map<int, std::vector<ProfileSample>> prefill, decode;
  for (const ProfileSample& s : profile.samples) {
    (s.phase == Phase::kPrefill ? prefill : decode)[s.tensor_parallel].push_back(s);
  }
  std::set<int> degrees;
  for (const auto& [tp, samples] : prefill) degrees.insert(tp);
  for (const auto& [tp, samples] : decode) degrees.insert(tp);
  if (degrees.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the profile of ", profile.model, " has no samples; measure one with `troupe profile`"));
  }
  constexpr size_t kMinSamples = kTerms;
  std::vector<TensorParallelFit> fits;
  for (int tp : degrees) {
    TensorParallelFit fit;
    fit.tensor_parallel = tp;
    for (Phase phase : {Phase::kPrefill, Phase::kDecode}) {
      const std::vector<ProfileSample>& samples = (phase == Phase::kPrefill ? prefill : decode)[tp];
      if (samples.size() < kMinSamples) {
        return PhaseFitError(
            profile, phase, tp,
            absl::StrCat("are ", samples.size(), "; the fit needs at least ", kMinSamples,
                         " (profile several batch sizes and lengths)"));
      }
      if (DistinctCount(samples, [](const ProfileSample& s) { return s.tokens; }) < 2) {
        return PhaseFitError(profile, phase, tp,
                             "all have the same token count, which cannot separate the terms; "
                             "profile several lengths");
      }
    }
    // Prefill: one piece.
    std::vector<Observation> data;
    for (const ProfileSample& s : prefill[tp]) {
      data.push_back(
          {PrefillFeatures(config, options.block_size, tp, s.tokens, s.tokens_squared), s.seconds});
    }
    Coefficients c;
    double sse = 0;
    if (!FitNonNegative(data, &c, &sse)) {
      return PhaseFitError(profile, Phase::kPrefill, tp,
                           "cannot be fitted; profile a wider range of batches and lengths");
    }
    fit.prefill = {c[0], c[1], c[2]};
    fit.prefill_error = Errors(data, [&](const Observation& o) { return Dot(o.x, c); });

    // Decode: one piece, then every split between two profiled batch sizes.
    std::vector<std::pair<int, Observation>> by_batch;
    for (const ProfileSample& s : decode[tp]) {
      by_batch.push_back({s.batch, {DecodeFeatures(config, tp, s.batch, s.tokens), s.seconds}});
    }
    std::sort(by_batch.begin(), by_batch.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    data.clear();
    for (const auto& [batch, o] : by_batch) data.push_back(o);
    Coefficients single;
    double single_sse = 0;
    if (!FitNonNegative(data, &single, &single_sse)) {
      return PhaseFitError(profile, Phase::kDecode, tp,
                           "cannot be fitted; profile a wider range of batches and contexts");
    }
    fit.decode_large = {single[0], single[1], single[2]};
    double best_sse = single_sse;
    // A fit already exact to rounding cannot be improved by splitting it.
    constexpr double kRoundingSquaredError = 1e-18;
    const bool exact = single_sse <= kRoundingSquaredError * data.size();
    for (size_t split = 1; !exact && split < by_batch.size(); ++split) {
      if (by_batch[split].first == by_batch[split - 1].first) continue;
      const size_t small_count = split, large_count = by_batch.size() - split;
      if (small_count < static_cast<size_t>(std::max(options.min_piece_samples, kTerms)) ||
          large_count < static_cast<size_t>(std::max(options.min_piece_samples, kTerms))) {
        continue;
      }
      std::vector<Observation> small(data.begin(), data.begin() + split);
      std::vector<Observation> large(data.begin() + split, data.end());
      Coefficients cs, cl;
      double sse_small = 0, sse_large = 0;
      if (!FitNonNegative(small, &cs, &sse_small) || !FitNonNegative(large, &cl, &sse_large)) {
        continue;
      }
      if (sse_small + sse_large < best_sse &&
          sse_small + sse_large <= (1 - options.piecewise_min_gain) * single_sse) {
        best_sse = sse_small + sse_large;
        fit.decode_threshold = by_batch[split].first;
        fit.decode_small = {cs[0], cs[1], cs[2]};
        fit.decode_large = {cl[0], cl[1], cl[2]};
      }
    }
    FitError decode_error;
    decode_error.samples = static_cast<int>(by_batch.size());
    for (const auto& [batch, o] : by_batch) {
      const DecodeCoefficients& d = fit.decode_threshold > 0 && batch < fit.decode_threshold
                                        ? fit.decode_small
                                        : fit.decode_large;
      const double r = std::abs(Dot(o.x, {d.c4, d.c5, d.c6}) - o.seconds) / o.seconds;
      decode_error.mean_relative += r / by_batch.size();
      decode_error.max_relative = std::max(decode_error.max_relative, r);
    }
    fit.decode_error = decode_error;
    fits.push_back(fit);
  }
  return FittedLatencyModel(config, std::move(fits), options,
                            absl::StrCat("a profile of ", profile.model, " on ", profile.device,
                                         " (", profile.dtype, ")"));
}

FittedLatencyModel::FittedLatencyModel(model::ModelConfig config,
                                       std::vector<TensorParallelFit> fits,
                                       LatencyModelOptions options, std::string source)
    : config_(std::move(config)),
      fits_(std::move(fits)),
      options_(options),
      source_(std::move(source)) {
  std::sort(fits_.begin(), fits_.end(),
            [](const auto& a, const auto& b) { return a.tensor_parallel < b.tensor_parallel; });
}

absl::StatusOr<std::unique_ptr<StepTimeModel>> FittedLatencyModel::For(int tensor_parallel,
                                                                       int pipeline_stages) const {
  if (tensor_parallel < 1 || pipeline_stages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("tensor_parallel ", tensor_parallel,
                                                   " and pipeline_stages ", pipeline_stages,
                                                   " must both be at least 1"));
  }
  std::vector<std::string> profiled;
  for (const TensorParallelFit& fit : fits_) {
    if (fit.tensor_parallel == tensor_parallel) {
      return std::make_unique<FittedStepTimeModel>(config_, fit, tensor_parallel,
                                                   options_.block_size);
    }
    profiled.push_back(absl::StrCat(fit.tensor_parallel));
  }
  if (options_.scale_unprofiled_tp && !fits_.empty() && fits_.front().tensor_parallel == 1) {
    return std::make_unique<FittedStepTimeModel>(config_, fits_.front(), tensor_parallel,
                                                 options_.block_size);
  }
  return absl::NotFoundError(absl::StrCat(
      "the latency model of ", config_.name, " has no fit for tensor_parallel=", tensor_parallel,
      " (profiled: ", absl::StrJoin(profiled, ", "), "); profile that degree",
      options_.scale_unprofiled_tp ? ", or profile TP1 to scale from it"
                                   : ", or allow scaling from TP1 (scale_unprofiled_tp)"));
}

std::string FittedLatencyModel::Describe() const {
  std::vector<std::string> degrees;
  for (const TensorParallelFit& fit : fits_) degrees.push_back(absl::StrCat(fit.tensor_parallel));
  return absl::StrCat(
      "DistServe's latency model fitted to ", source_, " (TP ", absl::StrJoin(degrees, ", "),
      options_.scale_unprofiled_tp && !fits_.empty() && fits_[0].tensor_parallel == 1
          ? "; other degrees scaled from TP1)"
          : ")");
}

std::string FittedLatencyModel::Report() const {
  std::string out =
      absl::StrFormat("%-3s %-7s %-36s %-9s %s\n", "tp", "phase", "coefficients (C1..C3 | C4..C6)",
                      "split", "rel. error mean/max");
  for (const TensorParallelFit& f : fits_) {
    absl::StrAppendFormat(
        &out, "%-3d %-7s %-36s %-9s %.1f%% / %.1f%%\n", f.tensor_parallel, "prefill",
        absl::StrFormat("%.3g %.3g %.3g", f.prefill.c1, f.prefill.c2, f.prefill.c3), "-",
        100 * f.prefill_error.mean_relative, 100 * f.prefill_error.max_relative);
    const std::string large =
        absl::StrFormat("%.3g %.3g %.3g", f.decode_large.c4, f.decode_large.c5, f.decode_large.c6);
    if (f.decode_threshold > 0) {
      absl::StrAppendFormat(&out, "%-3d %-7s %-36s %-9s %.1f%% / %.1f%%\n", f.tensor_parallel,
                            "decode",
                            absl::StrFormat("%.3g %.3g %.3g", f.decode_small.c4, f.decode_small.c5,
                                            f.decode_small.c6),
                            absl::StrCat("B<", f.decode_threshold),
                            100 * f.decode_error.mean_relative, 100 * f.decode_error.max_relative);
      absl::StrAppendFormat(&out, "%-3s %-7s %-36s %-9s\n", "", "", large,
                            absl::StrCat("B>=", f.decode_threshold));
    } else {
      absl::StrAppendFormat(&out, "%-3d %-7s %-36s %-9s %.1f%% / %.1f%%\n", f.tensor_parallel,
                            "decode", large, "-", 100 * f.decode_error.mean_relative,
                            100 * f.decode_error.max_relative);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Roofline.

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// Datasheet values (dense FP16 tensor-core rate: half the "with sparsity" figure; memory as
// nvidia-smi reports it).
const std::vector<GpuSpec>& GpuPresets() {
  static const auto* presets = new std::vector<GpuSpec>{
      // NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB): FP16 tensor core 312 TFLOPS
      // (624 sparse), HBM2e 2,039 GB/s, 80 GB (nvidia-smi: 81920 MiB), NVLink 600 GB/s
      // (bidirectional: 300 GB/s each way). DistServe's testbed GPU.
      {"a100-80gb", 312e12, 2039e9, 81920 * kMiB, 300e9},
      // NVIDIA H100 Tensor Core GPU datasheet (SXM): FP16 tensor core 1,979 TFLOPS sparse
      // (989.5 dense), HBM3 3.35 TB/s, 80 GB (nvidia-smi: 81559 MiB), NVLink 900 GB/s
      // (450 GB/s each way).
      {"h100-sxm", 989.5e12, 3350e9, 81559 * kMiB, 450e9},
      // NVIDIA H200 Tensor Core GPU datasheet (SXM): FP16 tensor core 1,979 TFLOPS sparse
      // (989.5 dense), HBM3e 4.8 TB/s, 141 GB (nvidia-smi: 143771 MiB), NVLink 900 GB/s
      // (450 GB/s each way).
      {"h200", 989.5e12, 4800e9, 143771 * kMiB, 450e9},
  };
  return *presets;
}

class RooflineStepTimeModel : public StepTimeModel {
 public:
  RooflineStepTimeModel(const model::ModelConfig& config, const GpuSpec& gpu,
                        const RooflineOptions& options, int tp)
      : gpu_(gpu), options_(options), tp_(tp) {
    h_ = config.hidden_size;
    m_ = config.ffn_size;
    layers_ = config.num_layers;
    vocab_ = config.vocab_size;
    weight_bytes_ = static_cast<double>(model::ParameterCount(config)) * options.bytes_per_element;
    kv_bytes_per_token_ = 2.0 * config.num_layers * config.num_kv_heads * config.head_dim() *
                          options.bytes_per_element;
    flops_per_s_ = options.flops_efficiency * gpu.dense_fp16_flops;
    bytes_per_s_ = options.bandwidth_efficiency * gpu.hbm_bytes_per_s;
  }

  double PrefillSeconds(int batch, int64_t tokens, int64_t tokens_squared) const override {
    const double t = static_cast<double>(tokens), t2 = static_cast<double>(tokens_squared);
    // GEMMs: 2 FLOPs per weight per token; causal attention (QKᵀ and AV): 2·t₂·h; the head on
    // each prompt's last token.
    const double flops = (layers_ * (2 * t * (4 * h_ * h_ + 2 * h_ * m_) + 2 * t2 * h_) +
                          2.0 * batch * h_ * vocab_) /
                         tp_;
    // Weights once, the new KV written, the activations in and out of each layer (~4 passes).
    const double bytes = (weight_bytes_ + t * kv_bytes_per_token_) / tp_ +
                         layers_ * 4 * t * h_ * options_.bytes_per_element;
    return std::max(flops / flops_per_s_, bytes / bytes_per_s_) + AllReduces(t);
  }

  double DecodeSeconds(int batch, int64_t context_tokens) const override {
    const double b = batch, ctx = static_cast<double>(context_tokens);
    const double flops =
        (layers_ * (2 * b * (4 * h_ * h_ + 2 * h_ * m_) + 4 * ctx * h_) + 2 * b * h_ * vocab_) /
        tp_;
    const double bytes = (weight_bytes_ + ctx * kv_bytes_per_token_) / tp_;
    return std::max(flops / flops_per_s_, bytes / bytes_per_s_) + AllReduces(b);
  }

 private:
  // AllReduces is Megatron's two all-reduces per layer of `rows` × h activations, as a ring:
  // 2(tp-1)/tp of the bytes cross each GPU's link, plus a fixed latency each.
  double AllReduces(double rows) const {
    if (tp_ == 1) return 0;
    const double bytes = rows * h_ * options_.bytes_per_element;
    const double one =
        options_.allreduce_latency_s +
        2.0 * (tp_ - 1) / tp_ * bytes / (options_.link_efficiency * gpu_.nvlink_bytes_per_s);
    return 2 * layers_ * one;
  }

  GpuSpec gpu_;
  RooflineOptions options_;
  int tp_;
  double h_ = 0, m_ = 0, layers_ = 0, vocab_ = 0;
  double weight_bytes_ = 0, kv_bytes_per_token_ = 0;
  double flops_per_s_ = 0, bytes_per_s_ = 0;
};

}  // namespace

absl::StatusOr<GpuSpec> GpuPreset(std::string_view name) {
  for (const GpuSpec& gpu : GpuPresets()) {
    if (gpu.name == name) return gpu;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown GPU \"", std::string(name),
                                                 "\"; use one of ",
                                                 absl::StrJoin(GpuPresetNames(), ", ")));
}

std::vector<std::string> GpuPresetNames() {
  std::vector<std::string> names;
  for (const GpuSpec& gpu : GpuPresets()) names.push_back(gpu.name);
  return names;
}

RooflineModel::RooflineModel(model::ModelConfig config, GpuSpec gpu, RooflineOptions options)
    : config_(std::move(config)), gpu_(std::move(gpu)), options_(options) {}

absl::StatusOr<std::unique_ptr<StepTimeModel>> RooflineModel::For(int tensor_parallel,
                                                                  int pipeline_stages) const {
  if (tensor_parallel < 1 || pipeline_stages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("tensor_parallel ", tensor_parallel,
                                                   " and pipeline_stages ", pipeline_stages,
                                                   " must both be at least 1"));
  }
  if (!(gpu_.dense_fp16_flops > 0) || !(gpu_.hbm_bytes_per_s > 0) ||
      (tensor_parallel > 1 && !(gpu_.nvlink_bytes_per_s > 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU \"", gpu_.name, "\" needs positive dense_fp16_flops, hbm_bytes_per_s and (for ",
        "tensor parallelism) nvlink_bytes_per_s; start from a preset (",
        absl::StrJoin(GpuPresetNames(), ", "), ")"));
  }
  return std::make_unique<RooflineStepTimeModel>(config_, gpu_, options_, tensor_parallel);
}

std::string RooflineModel::Describe() const {
  return absl::StrFormat(
      "roofline of %s on %s (%.0f TFLOP/s x %.2f, %.0f GB/s x %.2f, NVLink %.0f GB/s x %.2f)",
      config_.name, gpu_.name, gpu_.dense_fp16_flops / 1e12, options_.flops_efficiency,
      gpu_.hbm_bytes_per_s / 1e9, options_.bandwidth_efficiency, gpu_.nvlink_bytes_per_s / 1e9,
      options_.link_efficiency);
}

}  // namespace troupe::serving::placement
