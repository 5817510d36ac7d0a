#include "store/redis/sharded.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "obs/log.h"
#include "xxhash.h"

namespace sluice::redis {

using spdlog::level::level_enum;

namespace {

constexpr timeval kSentinelTimeout = {0, 500 * 1000};
constexpr auto kAskEvery = std::chrono::seconds(1);
constexpr int kPollMillis = 200;

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;

Context Connect(const NodeAddress& node) {
  Context c(redisConnectWithTimeout(node.host.c_str(), node.port, kSentinelTimeout));
  if (c == nullptr || c->err != 0) return nullptr;
  redisSetTimeout(c.get(), kSentinelTimeout);
  return c;
}

}  // namespace

HashRing::HashRing(const std::vector<std::string>& shard_names) {
  points_.reserve(shard_names.size() * kPointsPerShard);
  for (uint32_t s = 0; s < shard_names.size(); ++s) {
    for (int p = 0; p < kPointsPerShard; ++p) {
      const std::string point = absl::StrCat(shard_names[s], "#", p);
      points_.emplace_back(XXH3_64bits(point.data(), point.size()), s);
    }
  }
  std::sort(points_.begin(), points_.end());
}

size_t HashRing::ShardOf(std::string_view key) const {
  if (points_.empty()) return 0;
  const uint64_t h = XXH3_64bits(key.data(), key.size());
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(h, uint32_t{0}));
  if (it == points_.end()) it = points_.begin();
  return it->second;
}

// Follows one Sentinel-managed master: asks the sentinels where it is every second, and listens
// for +switch-master in between, moving the shard's client when it changes.
class Sharded::SentinelWatch {
 public:
  SentinelWatch(std::vector<NodeAddress> sentinels, std::string master, Client& client)
      : sentinels_(std::move(sentinels)), master_(std::move(master)), client_(client) {
    thread_ = std::thread([this] { Run(); });
  }
  ~SentinelWatch() {
    stopping_.store(true);
    thread_.join();
  }

 private:
  void Run() {
    size_t next = 0;
    while (!stopping_.load()) {
      const NodeAddress& sentinel = sentinels_[next++ % sentinels_.size()];
      Context query = Connect(sentinel);
      Context events = query != nullptr ? Connect(sentinel) : nullptr;
      if (events != nullptr) {
        Reply subscribed(
            static_cast<redisReply*>(redisCommand(events.get(), "SUBSCRIBE +switch-master")));
        if (subscribed == nullptr || subscribed->type == REDIS_REPLY_ERROR) events.reset();
      }
      if (events == nullptr) {
        if (!failing_) {
          obs::LogEvent(level_enum::warn, "redis_sentinel_unreachable",
                        {{"sentinel", sentinel.ToString()}, {"master", master_}});
        }
        failing_ = true;
        Sleep(std::chrono::milliseconds(200));
        continue;
      }
      failing_ = false;
      Watch(query.get(), events.get());
    }
  }

  // Until this sentinel fails or the watch stops.
  void Watch(redisContext* query, redisContext* events) {
    auto asked = std::chrono::steady_clock::time_point{};
    while (!stopping_.load()) {
      if (std::chrono::steady_clock::now() - asked >= kAskEvery) {
        asked = std::chrono::steady_clock::now();
        if (!Ask(query)) return;
      }
      pollfd p{events->fd, POLLIN, 0};
      const int ready = poll(&p, 1, kPollMillis);
      if (ready < 0) return;
      if (ready == 0) continue;
      if (redisBufferRead(events) != REDIS_OK) return;
      for (;;) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(events, &raw) != REDIS_OK) return;
        if (raw == nullptr) break;
        Reply message(static_cast<redisReply*>(raw));
        // ["message", "+switch-master", "<name> <old-ip> <old-port> <new-ip> <new-port>"]
        if (message->type != REDIS_REPLY_ARRAY || message->elements != 3 ||
            message->element[2]->type != REDIS_REPLY_STRING) {
          continue;
        }
        const std::vector<std::string> parts = absl::StrSplit(
            absl::string_view(message->element[2]->str, message->element[2]->len), ' ');
        uint32_t port = 0;
        if (parts.size() == 5 && parts[0] == master_ && absl::SimpleAtoi(parts[4], &port) &&
            port > 0 && port <= 65535) {
          Move(parts[3], static_cast<uint16_t>(port), "switch-master");
        }
      }
    }
  }

  bool Ask(redisContext* query) {
    Reply r(static_cast<redisReply*>(
        redisCommand(query, "SENTINEL get-master-addr-by-name %s", master_.c_str())));
    if (r == nullptr) return false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
      uint32_t port = 0;
      if (absl::SimpleAtoi(absl::string_view(r->element[1]->str, r->element[1]->len), &port) &&
          port > 0 && port <= 65535) {
        Move(std::string(r->element[0]->str, r->element[0]->len), static_cast<uint16_t>(port),
             "sentinel");
      }
    } else if (!unknown_logged_) {
      unknown_logged_ = true;
      obs::LogEvent(level_enum::warn, "redis_sentinel_unknown_master", {{"master", master_}});
    }
    return true;
  }

  void Move(std::string host, uint16_t port, std::string_view why) {
    NodeAddress address{std::move(host), port};
    if (address == current_) return;
    obs::LogEvent(level_enum::info, "redis_sentinel_master",
                  {{"master", master_}, {"address", address.ToString()}, {"from", why}});
    current_ = address;
    client_.SetAddress(address.host, address.port);
  }

  void Sleep(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (!stopping_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  const std::vector<NodeAddress> sentinels_;
  const std::string master_;
  Client& client_;
  NodeAddress current_;
  bool failing_ = false;
  bool unknown_logged_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

struct Sharded::Shard {
  std::string name;
  std::unique_ptr<Client> client;
  std::unique_ptr<SentinelWatch> watch;  // Sentinel-managed shards; stopped before the client
  ~Shard() { watch.reset(); }
};

absl::StatusOr<std::unique_ptr<Sharded>> Sharded::Create(std::vector<ShardSpec> specs,
                                                         ClientOptions client) {
  if (specs.empty()) return absl::InvalidArgumentError("redis_sharded needs at least one shard");
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<std::string> names;
  for (size_t i = 0; i < specs.size(); ++i) {
    ShardSpec& spec = specs[i];
    auto shard = std::make_unique<Shard>();
    ClientOptions options = client;
    if (!spec.url.empty()) {
      auto endpoint = ParseUrl(spec.url, &options.user);
      if (!endpoint.ok()) return endpoint.status();
      options.endpoint = *endpoint;
      shard->name = NodeAddress{endpoint->host, endpoint->port}.ToString();
    } else {
      if (spec.sentinels.empty() || spec.master.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("shard ", i + 1, " needs a url, or sentinels and a master name"));
      }
      options.endpoint.host.clear();  // known once a sentinel answers
      shard->name = "sentinel:" + spec.master;
    }
    if (std::find(names.begin(), names.end(), shard->name) != names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("shard ", shard->name, " is listed twice"));
    }
    names.push_back(shard->name);
    shard->client = std::make_unique<Client>(std::move(options));
    if (spec.url.empty()) {
      shard->watch =
          std::make_unique<SentinelWatch>(std::move(spec.sentinels), spec.master, *shard->client);
    }
    shards.push_back(std::move(shard));
  }
  return std::unique_ptr<Sharded>(new Sharded(std::move(shards), HashRing(names)));
}

Sharded::Sharded(std::vector<std::unique_ptr<Shard>> shards, HashRing ring)
    : shards_(std::move(shards)), ring_(std::move(ring)) {}

Sharded::~Sharded() = default;

void Sharded::Execute(uint64_t group, std::string commands, size_t replies, Deadline deadline,
                      Client::Callback done) {
  shards_[group]->client->Execute(std::move(commands), replies, deadline, std::move(done));
}

bool Sharded::available() const {
  for (const auto& shard : shards_) {
    if (!shard->client->available()) return false;
  }
  return true;
}

}  // namespace sluice::redis
