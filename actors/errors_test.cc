#include "actors/errors.h"

#include "caf/exit_reason.hpp"
#include "caf/sec.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;

TEST(ErrorsTest, StatusSurvivesTheRoundTrip) {
  for (absl::StatusCode code :
       {absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
        absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kInternal}) {
    absl::Status status(code, "what went wrong and what to do");
    caf::error error = ToCafError(status);
    EXPECT_EQ(error.category(), kErrorCategory);
    EXPECT_EQ(ToStatus(error), status);
  }
}

TEST(ErrorsTest, OkIsNoError) {
  EXPECT_FALSE(ToCafError(absl::OkStatus()));
  EXPECT_TRUE(ToStatus(caf::error()).ok());
  EXPECT_EQ(RenderError(caf::error()), "no error");
}

TEST(ErrorsTest, CafSystemErrorsMapToTheNearestCode) {
  EXPECT_EQ(ToStatus(caf::make_error(caf::sec::request_timeout)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ToStatus(caf::make_error(caf::sec::request_receiver_down)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ToStatus(caf::make_error(caf::sec::cannot_connect_to_node)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ToStatus(caf::make_error(caf::sec::unexpected_message)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ToStatus(caf::make_error(caf::sec::runtime_error)).code(),
            absl::StatusCode::kInternal);
  EXPECT_THAT(ToStatus(caf::make_error(caf::sec::request_timeout)).message(),
              HasSubstr("request_timeout"));
}

TEST(ErrorsTest, ExitReasonsAreReadable) {
  caf::error killed = caf::make_error(caf::exit_reason::kill);
  EXPECT_THAT(RenderError(killed), HasSubstr("actor exited: kill"));
  EXPECT_EQ(ToStatus(killed).code(), absl::StatusCode::kUnavailable);
  caf::error unreachable = caf::make_error(caf::exit_reason::remote_link_unreachable);
  EXPECT_THAT(RenderError(unreachable), HasSubstr("remote_link_unreachable"));
}

TEST(ErrorsTest, RenderShowsCodeAndContext) {
  EXPECT_EQ(RenderError(MakeCafError(absl::StatusCode::kNotFound, "no actor \"x\"")),
            "NOT_FOUND: no actor \"x\"");
}

}  // namespace
}  // namespace troupe::actors
