// Every config shipped in configs/ parses and uses only known roles and parameters, so the
// examples in the docs cannot rot.
#include <dirent.h>

#include <string>
#include <vector>

#include "actors/cluster_config.h"
#include "actors/roles.h"
#include "gtest/gtest.h"
#include "serving/cluster/serving_roles.h"

namespace troupe::tests {
namespace {

std::vector<std::string> ConfigFiles() {
  std::vector<std::string> files;
  if (DIR* dir = opendir("configs")) {
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name.size() > 5 && name.substr(name.size() - 5) == ".toml") {
        files.push_back("configs/" + name);
      }
    }
    closedir(dir);
  }
  return files;
}

TEST(ConfigsTest, EveryShippedConfigIsValid) {
  std::vector<std::string> files = ConfigFiles();
  ASSERT_FALSE(files.empty()) << "no configs/*.toml in the runfiles";
  for (const std::string& file : files) {
    absl::StatusOr<actors::ClusterConfig> config = actors::LoadClusterConfig(file);
    ASSERT_TRUE(config.ok()) << config.status();
    actors::RoleCatalog roles = actors::BuiltinRoles();
    serving::cluster::AddServingRoles(roles, {});
    const absl::Status checked = roles.Check(*config);
    EXPECT_TRUE(checked.ok()) << file << ": " << checked;
  }
}

}  // namespace
}  // namespace troupe::tests
