#include "actors/errors.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "caf/exit_reason.hpp"
#include "caf/message.hpp"
#include "caf/sec.hpp"

namespace troupe::actors {
namespace {

std::string ContextText(const caf::error& error) {
  const caf::message& context = error.context();
  if (context.match_elements<std::string>()) return context.get_as<std::string>(0);
  if (context.empty()) return {};
  return caf::to_string(context);
}

absl::StatusCode CodeForSystemError(caf::sec code) {
  switch (code) {
    case caf::sec::request_timeout:
      return absl::StatusCode::kDeadlineExceeded;
    case caf::sec::request_receiver_down:
    case caf::sec::cannot_forward_to_invalid_actor:
    case caf::sec::socket_disconnected:
    case caf::sec::connection_timeout:
    case caf::sec::remote_lookup_failed:
    case caf::sec::no_actor_published_at_port:
    case caf::sec::remote_linking_failed:
    case caf::sec::cannot_connect_to_node:
    case caf::sec::no_route_to_receiving_node:
    case caf::sec::disconnect_during_handshake:
    case caf::sec::cannot_open_port:
    case caf::sec::no_context:
      return absl::StatusCode::kUnavailable;
    case caf::sec::unexpected_message:
    case caf::sec::unexpected_response:
    case caf::sec::invalid_argument:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

caf::error ToCafError(const absl::Status& status) {
  if (status.ok()) return caf::none;
  return caf::error(static_cast<uint8_t>(status.code()), kErrorCategory,
                    caf::make_message(std::string(status.message())));
}

caf::error MakeCafError(absl::StatusCode code, std::string message) {
  return ToCafError(absl::Status(code, std::move(message)));
}

absl::Status ToStatus(const caf::error& error) {
  if (!error) return absl::OkStatus();
  if (error.category() == kErrorCategory) {
    return absl::Status(static_cast<absl::StatusCode>(error.code()), ContextText(error));
  }
  if (error.category() == caf::atom("system")) {
    return absl::Status(CodeForSystemError(static_cast<caf::sec>(error.code())),
                        RenderError(error));
  }
  return absl::UnavailableError(RenderError(error));
}

std::string Quoted(const std::string& text) { return absl::StrCat("\"", text, "\""); }

std::string RenderError(const caf::error& error) {
  if (!error) return "no error";
  std::string context = ContextText(error);
  std::string what;
  if (error.category() == kErrorCategory) {
    what = absl::StatusCodeToString(static_cast<absl::StatusCode>(error.code()));
  } else if (error.category() == caf::atom("system")) {
    what = caf::to_string(static_cast<caf::sec>(error.code()));
  } else if (error.category() == caf::atom("exit")) {
    what = absl::StrCat("actor exited: ",
                        caf::to_string(static_cast<caf::exit_reason>(error.code())));
  } else {
    what = absl::StrCat(caf::to_string(error.category()), " error ", error.code());
  }
  return context.empty() ? what : absl::StrCat(what, ": ", context);
}

}  // namespace troupe::actors
