#include "actors/metrics_http.h"

#include <httplib.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"

namespace troupe::actors {

MetricsHttpServer::MetricsHttpServer(const MetricsRegistry* registry) : registry_(registry) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<int> MetricsHttpServer::Start(const std::string& host, int port) {
  if (server_ != nullptr) {
    return absl::FailedPreconditionError("the metrics server is already running");
  }
  auto server = std::make_unique<httplib::Server>();
  // httplib's default also sets SO_REUSEPORT, which would let a second server share a taken
  // port silently. Keep only SO_REUSEADDR.
  server->set_socket_options([](socket_t socket) {
    int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry_->PrometheusText(), "text/plain; version=0.0.4");
  });
  server->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    response.set_content(absl::StrCat("no such endpoint: ", request.path, "; try GET /metrics\n"),
                         "text/plain");
  });
  int bound = port == 0 ? server->bind_to_any_port(host) : port;
  if (port != 0 && !server->bind_to_port(host, port)) bound = -1;
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", host, ":", port,
        "; the port is taken or the address is not local. Pick another metrics_port, or 0"));
  }
  server_ = std::move(server);
  thread_ = std::thread([server = server_.get()] { server->listen_after_bind(); });
  // httplib ignores a stop() that comes before its accept loop runs, and would then serve
  // forever: return only once the loop is up.
  for (int waited_ms = 0; !server_->is_running(); ++waited_ms) {
    if (waited_ms == 5000) {
      Stop();
      return absl::InternalError("the metrics HTTP server did not start within 5 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

void MetricsHttpServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace troupe::actors
