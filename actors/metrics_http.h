// MetricsHttpServer serves a MetricsRegistry at GET /metrics over HTTP (cpp-httplib), on its
// own thread, for Prometheus to scrape.
//
//   MetricsHttpServer server(&registry);
//   absl::StatusOr<int> port = server.Start("127.0.0.1", 0);  // 0: an ephemeral port
//   ...
//   server.Stop();
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "actors/metrics.h"

namespace httplib {
class Server;
}

namespace troupe::actors {

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(const MetricsRegistry* registry);
  ~MetricsHttpServer();  // Stops the server.

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Start binds `host:port` (port 0 picks one) and returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  // Stop closes the socket and joins the serving thread. Safe to call twice.
  void Stop();

 private:
  const MetricsRegistry* registry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace troupe::actors
