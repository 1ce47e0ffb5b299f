// Errors at actor boundaries.
//
// Inside libraries Troupe reports failures as absl::Status. Across actors (and processes) a
// failure travels as a caf::error whose code is the absl::StatusCode, in the error category
// "troupe", with the status message as context. The two conversions below are lossless for
// Troupe's own errors, and map CAF's system errors (a dead receiver, a timeout) onto the
// nearest status code with CAF's description kept in the message.
//
//   caf::error e = ToCafError(absl::NotFoundError("no actor \"router\" on node \"n1\""));
//   absl::Status s = ToStatus(e);  // NotFound, same message
#pragma once

#include <string>

#include "absl/status/status.h"
#include "caf/atom.hpp"
#include "caf/error.hpp"

namespace troupe::actors {

// kErrorCategory is the CAF error category of every error made by ToCafError.
inline constexpr caf::atom_value kErrorCategory = caf::atom("troupe");

// ToCafError converts a non-OK status to a caf::error; an OK status becomes caf::none.
caf::error ToCafError(const absl::Status& status);

// MakeCafError is ToCafError(absl::Status(code, message)).
caf::error MakeCafError(absl::StatusCode code, std::string message);

// ToStatus converts any caf::error to a status. CAF's own errors keep their description:
// a request timeout becomes DeadlineExceeded, a dead or unreachable receiver Unavailable.
absl::Status ToStatus(const caf::error& error);

// RenderError renders any caf::error, Troupe's or CAF's, as one readable line.
std::string RenderError(const caf::error& error);

// Quoted returns `text` in double quotes, the way error messages show names and values.
std::string Quoted(const std::string& text);

}  // namespace troupe::actors
