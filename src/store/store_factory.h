// Builds the store `store:` asks for (CONTRACT §2, §7): for the server and the embeddable library.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/time.h"
#include "obs/metrics.h"
#include "store/store.h"
#include "store/store_config.h"

namespace sluice {

// The shared store of `config`: a MemoryStore (backend memory) or a RedisStore on a single
// server, a Redis Cluster or Sentinel-managed shards. Never blocks on Redis: connections are
// made in the background. `clock` and `metrics` must outlive the store. InvalidArgument when
// the config cannot make a store (a bad URL).
absl::StatusOr<std::unique_ptr<Store>> MakeStore(const StoreConfig& config, const Clock& clock,
                                                 obs::Metrics& metrics);

// What is wrong with `prefix` as `store.key_prefix` (a sentence naming the field), or nothing:
// no braces, spaces or control characters. For the config file and the library alike.
std::optional<std::string> CheckKeyPrefix(const std::string& prefix);

}  // namespace sluice
