// `troupe simulate`: replay the requests of a measured `troupe bench` run in the placement
// simulator (serving/placement/simulator.h), with step times fitted to a `troupe profile` of the
// same backend, and set the simulated SLO attainment beside the measured one, rate by rate: the
// check that the planner's simulator predicts the real engine.
//
//   troupe profile --model=tiny --kv_blocks=4096 --profile_out=profile.json
//   troupe serve &  troupe bench ... --rates=2,4,8 --goodput="ttft:250 tpot:50" --json_out=b.json
//   troupe simulate --profile=profile.json --measured=b.json --mode=disaggregated
//       --prefill_kv_blocks=256 --decode_kv_blocks=256 --json_out=validation.json
//
// docs/placement.md's validation section runs it (tools/placement_validation.sh).
#pragma once

namespace troupe {

// RunSimulate runs the command from its flags and returns the exit code.
int RunSimulate();

}  // namespace troupe
