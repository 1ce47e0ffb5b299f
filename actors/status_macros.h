// TROUPE_RETURN_IF_ERROR: return an absl::Status from the enclosing function if it is not OK,
// for code that checks many calls in a row (a forward pass, a KV copy, a collective). A plain
// header with Abseil only, so any layer (gpu/, serving/) can use it.
//
//   absl::Status Step() {
//     TROUPE_RETURN_IF_ERROR(Upload());
//     TROUPE_RETURN_IF_ERROR(Launch());
//     return absl::OkStatus();
//   }
#pragma once

#include "absl/status/status.h"

#define TROUPE_RETURN_IF_ERROR(expr)                      \
  do {                                                    \
    if (absl::Status troupe_s = (expr); !troupe_s.ok()) { \
      return troupe_s;                                    \
    }                                                     \
  } while (0)
