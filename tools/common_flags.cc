#include "tools/common_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(uint64_t, seed, 0,
          "The seed of the random weights (`bench`, `plan`: of the workload and its prompts).");
ABSL_FLAG(std::string, api_key, "",
          "`serve`: require \"Authorization: Bearer <key>\"; `bench`: send it.");
