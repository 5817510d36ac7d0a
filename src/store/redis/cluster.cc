#include "store/redis/cluster.h"

#include <hiredis/hiredis.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "obs/log.h"

namespace sluice::redis {

using spdlog::level::level_enum;

namespace {

constexpr int kMaxRedirects = 5;
constexpr auto kRefreshEvery = std::chrono::seconds(10);
constexpr auto kRefreshAtMostEvery = std::chrono::milliseconds(200);
constexpr auto kReapEvery = std::chrono::milliseconds(100);
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

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381": the node named. Redis prints an IPv6
// address there without brackets.
bool ParseRedirect(std::string_view error, std::string_view kind, NodeAddress* to) {
  if (!error.starts_with(kind) || error.size() <= kind.size() || error[kind.size()] != ' ') {
    return false;
  }
  const size_t space = error.rfind(' ');
  auto address = net::ParseHostPort(error.substr(space + 1), {.allow_unbracketed_ipv6 = true});
  if (!address.ok()) return false;
  *to = *std::move(address);
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
  absl::flat_hash_map<std::string, std::shared_ptr<Client>> clients;
  std::vector<std::pair<std::string, std::shared_ptr<Client>>> retired;
  {
    MutexLock lock(mu_);
    clients.swap(clients_);
    retired.swap(retired_);
  }
  clients.clear();  // each fails what it has in flight and joins its thread
  retired.clear();
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

std::vector<std::string> Cluster::NodeClients() const {
  MutexLock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [address, client] : clients_) out.push_back(address);
  for (const auto& [address, client] : retired_) out.push_back(address);
  return out;
}

std::shared_ptr<Client> Cluster::ClientFor(const NodeAddress& address) {
  const std::string key = address.ToString();
  MutexLock lock(mu_);
  if (stopping_) return nullptr;
  auto& client = clients_[key];
  if (client == nullptr) {
    ClientOptions options = client_options_;
    options.endpoint.host = address.host;
    options.endpoint.port = address.port;
    client = std::make_shared<Client>(std::move(options));
  }
  return client;
}

void Cluster::Execute(uint64_t group, std::string commands, size_t replies, Deadline deadline,
                      Client::Callback done) {
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
  Send(map->masters[map->node[slot]], false,
       Hop{.slot = slot,
           .commands = std::move(commands),
           .replies = replies,
           .deadline = deadline,
           .redirects = 0},
       std::move(done));
}

void Cluster::Send(const NodeAddress& address, bool asking, Hop hop, Client::Callback done) {
  std::shared_ptr<Client> client = ClientFor(address);
  if (client == nullptr) {
    return std::move(done)(absl::UnavailableError("redis cluster: shutting down"));
  }
  std::string payload;
  size_t expected = hop.replies;
  if (asking) {
    const std::string_view asking_command[] = {"ASKING"};
    AppendCommand(payload, asking_command);
    payload += hop.commands;
    ++expected;
  } else {
    payload = hop.commands;
  }
  // The same deadline on every hop: the check's, not a fresh one per node.
  const Deadline deadline = hop.deadline;
  client->Execute(std::move(payload), expected, deadline,
                  [this, asking, hop = std::move(hop),
                   done = std::move(done)](absl::StatusOr<std::vector<Reply>> result) mutable {
                    if (result.ok() && asking) result->erase(result->begin());  // ASKING's +OK
                    OnReply(std::move(hop), std::move(done), std::move(result));
                  });
}

void Cluster::OnReply(Hop hop, Client::Callback done, absl::StatusOr<std::vector<Reply>> result) {
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
    if (hop.redirects >= kMaxRedirects) {
      return std::move(done)(absl::UnavailableError(
          absl::StrCat("redis cluster: too many redirections for slot ", hop.slot)));
    }
    if (moved) {
      SetSlot(hop.slot, to);
      RequestRefresh();
    }
    ++hop.redirects;
    return Send(to, ask, std::move(hop), std::move(done));
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
    bool refresh = false;
    {
      MutexLock lock(mu_);
      // Until a complete map is known, keep asking (every 200 ms); then every 10 s or on request.
      const auto due = last + (complete ? kRefreshEvery : kRefreshAtMostEvery);
      // Retired clients are checked for idleness every 100 ms until they are gone.
      const auto wake =
          retired_.empty() ? due : std::min(due, std::chrono::steady_clock::now() + kReapEvery);
      cv_.WaitUntil(mu_, wake, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || refresh_requested_;
      });
      if (stopping_) return;
      refresh = refresh_requested_ || std::chrono::steady_clock::now() >= due;
      if (refresh) refresh_requested_ = false;
    }
    if (refresh) {
      const auto wait_until = last + kRefreshAtMostEvery;
      if (std::chrono::steady_clock::now() < wait_until) std::this_thread::sleep_until(wait_until);
      last = std::chrono::steady_clock::now();
      complete = Refresh();
    }
    ReapRetired();
  }
}

void Cluster::RetireClientsNotIn(const SlotMap& map) {
  for (auto it = clients_.begin(); it != clients_.end();) {
    const bool named = std::any_of(map.masters.begin(), map.masters.end(),
                                   [&](const NodeAddress& m) { return m.ToString() == it->first; });
    if (named) {
      ++it;
      continue;
    }
    obs::LogEvent(level_enum::info, "redis_cluster_node_dropped", {{"node", it->first}});
    retired_.emplace_back(it->first, std::move(it->second));
    clients_.erase(it++);
  }
}

void Cluster::ReapRetired() {
  std::vector<std::shared_ptr<Client>> reaped;
  {
    MutexLock lock(mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      // use_count 1: no request is being handed to it, and none can be (it is in no map), so
      // once nothing is outstanding nothing ever will be.
      if (it->second.use_count() == 1 && it->second->outstanding() == 0) {
        reaped.push_back(std::move(it->second));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  reaped.clear();  // outside mu_: joining a client's thread waits for its callbacks, which lock it
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
      RetireClientsNotIn(*map);
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
