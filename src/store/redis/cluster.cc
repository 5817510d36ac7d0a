#include "store/redis/cluster.h"

#include <hiredis/hiredis.h>

#include <charconv>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "obs/log.h"

namespace sluice::redis {

using spdlog::level::level_enum;

namespace {

constexpr int kMaxRedirects = 5;
constexpr auto kRefreshEvery = std::chrono::seconds(10);
constexpr auto kRefreshAtMostEvery = std::chrono::milliseconds(200);
constexpr timeval kDiscoveryTimeout = {0, 500 * 1000};

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster specifies.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381": the node named.
bool ParseRedirect(std::string_view error, std::string_view kind, NodeAddress* to) {
  if (!error.starts_with(kind) || error.size() <= kind.size() || error[kind.size()] != ' ') {
    return false;
  }
  const size_t space = error.rfind(' ');
  auto address = ParseNodeAddress(error.substr(space + 1));
  if (!address.ok()) return false;
  *to = *address;
  return true;
}

}  // namespace

std::string_view HashTag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

int KeySlot(std::string_view key) { return Crc16(HashTag(key)) & (kClusterSlots - 1); }

std::string NodeAddress::ToString() const {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text) {
  const std::string url =
      text.starts_with("redis://") ? std::string(text) : "redis://" + std::string(text);
  auto endpoint = ParseUrl(url);
  if (!endpoint.ok()) {
    return absl::InvalidArgumentError("invalid Redis node '" + std::string(text) +
                                      "' (expected host:port)");
  }
  return NodeAddress{endpoint->host, endpoint->port};
}

Cluster::Cluster(std::vector<NodeAddress> seeds, ClientOptions client)
    : client_options_(std::move(client)), seeds_(std::move(seeds)) {
  discovery_ = std::thread([this] { Discover(); });
}

Cluster::~Cluster() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  discovery_.join();
  absl::flat_hash_map<std::string, std::unique_ptr<Client>> clients;
  {
    MutexLock lock(mu_);
    clients.swap(clients_);
  }
  clients.clear();  // each fails what it has in flight and joins its thread
}

bool Cluster::available() const { return !down_.load(std::memory_order_relaxed); }

void Cluster::RequestRefresh() {
  {
    MutexLock lock(mu_);
    refresh_requested_ = true;
  }
  cv_.NotifyAll();
}

bool Cluster::WaitForSlots(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      MutexLock lock(mu_);
      if (map_ != nullptr) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

Client* Cluster::ClientFor(const NodeAddress& address) {
  const std::string key = address.ToString();
  MutexLock lock(mu_);
  if (stopping_) return nullptr;
  auto& client = clients_[key];
  if (client == nullptr) {
    ClientOptions options = client_options_;
    options.endpoint.host = address.host;
    options.endpoint.port = address.port;
    client = std::make_unique<Client>(std::move(options));
  }
  return client.get();
}

void Cluster::Execute(uint64_t group, std::string commands, size_t replies, Client::Callback done) {
  const int slot = static_cast<int>(group);
  std::shared_ptr<const SlotMap> map;
  {
    MutexLock lock(mu_);
    map = map_;
  }
  if (map == nullptr || map->node[slot] < 0) {
    RequestRefresh();
    return std::move(done)(
        absl::UnavailableError(absl::StrCat("redis cluster: no node known for slot ", slot)));
  }
  Send(slot, map->masters[map->node[slot]], false, std::move(commands), replies, 0,
       std::move(done));
}

void Cluster::Send(int slot, const NodeAddress& address, bool asking, std::string commands,
                   size_t replies, int redirects, Client::Callback done) {
  Client* client = ClientFor(address);
  if (client == nullptr) {
    return std::move(done)(absl::UnavailableError("redis cluster: shutting down"));
  }
  std::string payload;
  size_t expected = replies;
  if (asking) {
    const std::string_view asking_command[] = {"ASKING"};
    AppendCommand(payload, asking_command);
    payload += commands;
    ++expected;
  } else {
    payload = commands;
  }
  client->Execute(std::move(payload), expected,
                  [this, slot, asking, commands = std::move(commands), replies, redirects,
                   done = std::move(done)](absl::StatusOr<std::vector<Reply>> result) mutable {
                    if (result.ok() && asking) result->erase(result->begin());  // ASKING's +OK
                    OnReply(slot, std::move(commands), replies, redirects, std::move(done),
                            std::move(result));
                  });
}

void Cluster::OnReply(int slot, std::string commands, size_t replies, int redirects,
                      Client::Callback done, absl::StatusOr<std::vector<Reply>> result) {
  if (!result.ok()) {
    // The node is unreachable: a failover may be under way. Look again.
    down_.store(true, std::memory_order_relaxed);
    RequestRefresh();
    return std::move(done)(std::move(result));
  }
  down_.store(false, std::memory_order_relaxed);
  const redisReply& last = *result->back();
  if (last.type != REDIS_REPLY_ERROR) return std::move(done)(std::move(result));
  const std::string_view error(last.str, last.len);
  NodeAddress to;
  const bool moved = ParseRedirect(error, "MOVED", &to);
  const bool ask = !moved && ParseRedirect(error, "ASK", &to);
  if (moved || ask) {
    if (redirects >= kMaxRedirects) {
      return std::move(done)(absl::UnavailableError(
          absl::StrCat("redis cluster: too many redirections for slot ", slot)));
    }
    if (moved) {
      SetSlot(slot, to);
      RequestRefresh();
    }
    return Send(slot, to, ask, std::move(commands), replies, redirects + 1, std::move(done));
  }
  if (error.starts_with("CLUSTERDOWN") || error.starts_with("TRYAGAIN")) {
    RequestRefresh();
    return std::move(done)(absl::UnavailableError("redis cluster: " + std::string(error)));
  }
  std::move(done)(std::move(result));  // the caller's error (NOSCRIPT, a script error, ...)
}

void Cluster::SetSlot(int slot, const NodeAddress& address) {
  MutexLock lock(mu_);
  auto map = map_ != nullptr ? std::make_shared<SlotMap>(*map_) : std::make_shared<SlotMap>();
  if (map_ == nullptr) map->node.fill(-1);
  int index = -1;
  for (size_t i = 0; i < map->masters.size(); ++i) {
    if (map->masters[i] == address) index = static_cast<int>(i);
  }
  if (index < 0) {
    map->masters.push_back(address);
    index = static_cast<int>(map->masters.size() - 1);
  }
  map->node[slot] = static_cast<int16_t>(index);
  map_ = std::move(map);
}

void Cluster::Discover() {
  auto last = std::chrono::steady_clock::time_point{};
  bool complete = false;
  for (;;) {
    {
      MutexLock lock(mu_);
      // Until a complete map is known, keep asking (every 200 ms); then every 10 s or on request.
      cv_.WaitUntil(
          mu_, last + (complete ? kRefreshEvery : kRefreshAtMostEvery),
          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || refresh_requested_; });
      if (stopping_) return;
      refresh_requested_ = false;
    }
    const auto wait_until = last + kRefreshAtMostEvery;
    if (std::chrono::steady_clock::now() < wait_until) std::this_thread::sleep_until(wait_until);
    last = std::chrono::steady_clock::now();
    complete = Refresh();
  }
}

bool Cluster::Refresh() {
  // Ask the nodes in the current map first (they know the newest state), then the seeds.
  std::vector<NodeAddress> candidates;
  {
    MutexLock lock(mu_);
    if (map_ != nullptr) candidates = map_->masters;
  }
  candidates.insert(candidates.end(), seeds_.begin(), seeds_.end());
  for (const NodeAddress& node : candidates) {
    std::unique_ptr<redisContext, ContextFree> c(
        redisConnectWithTimeout(node.host.c_str(), node.port, kDiscoveryTimeout));
    if (c == nullptr || c->err != 0) continue;
    redisSetTimeout(c.get(), kDiscoveryTimeout);
    const Endpoint& e = client_options_.endpoint;
    if (!e.password.empty()) {
      Reply auth(static_cast<redisReply*>(client_options_.user.empty()
                                              ? redisCommand(c.get(), "AUTH %s", e.password.c_str())
                                              : redisCommand(c.get(), "AUTH %s %s",
                                                             client_options_.user.c_str(),
                                                             e.password.c_str())));
      if (auth == nullptr || auth->type == REDIS_REPLY_ERROR) continue;
    }
    Reply slots(static_cast<redisReply*>(redisCommand(c.get(), "CLUSTER SLOTS")));
    if (slots == nullptr || slots->type != REDIS_REPLY_ARRAY) continue;
    auto map = std::make_shared<SlotMap>();
    map->node.fill(-1);
    int covered = 0;
    for (size_t i = 0; i < slots->elements; ++i) {
      const redisReply* range = slots->element[i];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
      const redisReply* master = range->element[2];
      if (master->type != REDIS_REPLY_ARRAY || master->elements < 2 ||
          master->element[0]->type != REDIS_REPLY_STRING ||
          master->element[1]->type != REDIS_REPLY_INTEGER) {
        continue;
      }
      NodeAddress address{std::string(master->element[0]->str, master->element[0]->len),
                          static_cast<uint16_t>(master->element[1]->integer)};
      // A node that does not know its own address reports it empty: it is the one we asked.
      if (address.host.empty()) address.host = node.host;
      int index = -1;
      for (size_t m = 0; m < map->masters.size(); ++m) {
        if (map->masters[m] == address) index = static_cast<int>(m);
      }
      if (index < 0) {
        map->masters.push_back(address);
        index = static_cast<int>(map->masters.size() - 1);
      }
      const int64_t from = range->element[0]->integer;
      const int64_t to = range->element[1]->integer;
      for (int64_t s = std::max<int64_t>(0, from); s <= to && s < kClusterSlots; ++s) {
        map->node[s] = static_cast<int16_t>(index);
        ++covered;
      }
    }
    if (covered == 0) continue;  // a node that is not (yet) part of a cluster
    bool changed = false;
    {
      MutexLock lock(mu_);
      changed = map_ == nullptr || map_->masters != map->masters || map_->node != map->node;
      map_ = map;
    }
    if (changed) {
      std::string masters;
      for (const auto& m : map->masters)
        absl::StrAppend(&masters, masters.empty() ? "" : ",", m.ToString());
      obs::LogEvent(level_enum::info, "redis_cluster_slots",
                    {{"masters", masters}, {"slots_covered", covered}, {"from", node.ToString()}});
    }
    if (covered == kClusterSlots) down_.store(false, std::memory_order_relaxed);
    return covered == kClusterSlots;
  }
  return false;
}

}  // namespace sluice::redis
