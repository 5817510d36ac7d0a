// The stats of every server that shares a Redis store (CONTRACT §9 `scope=cluster`).
//
// Each server publishes, once a second and in one pipelined request, what its Recorder kept:
//   {P}{stats}:servers              ZSET  server id -> the Unix second it last published
//   {P}{stats}:sec:ID:MINUTE        HASH  Unix second -> that second's Counts (JSON), 65 min TTL
//   {P}{stats}:top:ID:MINUTE        STRING that minute's heavy hitters (both rankings, each
//                                   compacted to Recorder::past_capacity keys), 65 min TTL
// (P is the store's key_prefix; the {stats} hash tag keeps every key on one Redis Cluster
// node.) A cluster query reads the servers seen within its window, then their seconds or
// minutes, in two round trips, and sums or merges them: a server gone for longer than the
// window drops out. What a server counted in the current second reaches the others with its
// next publication, so the cluster view trails by up to about a second.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "stats/recorder.h"
#include "store/redis/topology.h"

namespace sluice::stats {

class ClusterStats {
 public:
  // `recorder` and `topology` must outlive the ClusterStats; `server_id` names this server.
  ClusterStats(Recorder& recorder, redis::Topology& topology, std::string key_prefix,
               std::chrono::milliseconds timeout, std::string server_id);

  // Publishes the seconds completed since the last publication and the current and previous
  // minutes' heavy hitters. Call once a second. After a failure the next call sends the seconds
  // again (up to a minute back). Thread-safe against the queries, not against itself.
  void Publish();

  template <typename T>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;
  // The summed totals of the last `window_seconds` over every server. Thread-safe.
  void Window(int64_t window_seconds, Callback<Counts> done);
  // The seconds [from, to], each summed over every server. Thread-safe.
  void Seconds(int64_t from, int64_t to, Callback<std::vector<Recorder::Second>> done);
  // The heavy hitters of `ranking` over the current minute and the `minutes` before it, merged
  // over every server. Thread-safe.
  void Top(Ranking ranking, int64_t minutes, Callback<SpaceSaving> done);

  const std::string& server_id() const { return server_id_; }

  // The JSON form of one second's Counts, as published. For tests.
  static std::string EncodeCounts(const Counts& counts);
  static bool DecodeCounts(std::string_view text, Counts* out);

 private:
  std::string Key(std::string_view kind, std::string_view server, int64_t n) const;
  std::string ServersKey() const;
  // Reads the ids of the servers that published at or after `since` (Unix seconds), then
  // runs `then` with them.
  void Servers(int64_t since,
               absl::AnyInvocable<void(absl::StatusOr<std::vector<std::string>>) &&> then);
  redis::Deadline NewDeadline() const;

  Recorder& recorder_;
  redis::Topology& topology_;
  const std::string prefix_;  // key_prefix + "{stats}:"
  const std::chrono::milliseconds timeout_;
  const std::string server_id_;
  uint64_t group_;  // the topology group of every stats key
  // The last second Redis is known to hold (set from the store's thread on success).
  std::shared_ptr<std::atomic<int64_t>> published_through_ =
      std::make_shared<std::atomic<int64_t>>(0);
};

// A server id: host name, process id and a random suffix.
std::string NewServerId();

}  // namespace sluice::stats
