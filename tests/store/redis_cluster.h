// A Redis Cluster that a test starts on free loopback ports and stops: real redis-servers (masters
// with replicas), formed by `redis-cli --cluster create`, for failover tests. Plus the slot of a
// key computed locally (CRC16 with hash tags, as Redis does) and a synchronous hiredis connection
// to any node. The waits are hang detectors, never assertions on speed.
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/store/redis_server.h"

namespace sluice::testing {

class RedisCluster {
 public:
  static constexpr int kSlots = 16384;

  // Starts masters * (1 + replicas) nodes (masters >= 3), creates the cluster and waits until
  // every node says cluster_state:ok, knows every other node, agrees on who serves which slot,
  // and every replica is in sync. Tuned for quick failovers: cluster-node-timeout 1 s, and
  // replicas always eligible (cluster-replica-validity-factor 0).
  explicit RedisCluster(int masters = 3, int replicas = 1,
                        std::chrono::seconds timeout = std::chrono::seconds(60))
      : masters_(masters), replicas_(replicas) {
    for (int i = 0; i < masters * (1 + replicas); ++i) nodes_.push_back(StartNode());
    std::vector<std::string> create = {"redis-cli", "--cluster", "create"};
    for (const auto& s : seeds()) create.push_back(s);
    create.insert(create.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
    RunTool(create, timeout);
    WaitFor([&] { return NotHealthy(/*complete=*/true); }, timeout, "the cluster to form");
  }
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;
  // Members: the nodes are killed, then the temporary folder is removed.
  ~RedisCluster() = default;

  // Every node, live or not, as "127.0.0.1:PORT".
  std::vector<std::string> seeds() const {
    std::vector<std::string> out;
    for (const auto& n : nodes_) out.push_back("127.0.0.1:" + std::to_string(n->port()));
    return out;
  }
  std::vector<int> ports() const {
    std::vector<int> out;
    for (const auto& n : nodes_) out.push_back(n->port());
    return out;
  }
  bool alive(int port) const { return Node(port).running(); }
  const std::string& dir() const { return dir_.path; }

  // The live nodes that say they are a master serving slots.
  std::vector<int> MasterPorts() const {
    std::vector<int> out;
    for (int port : LivePorts()) {
      for (const auto& e : Nodes(port)) {
        if (e.myself && e.Has("master") && !e.slots.empty()) out.push_back(port);
      }
    }
    return out;
  }

  // The slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (what is between the first
  // '{' and the first '}' after it, when not empty), modulo 16384.
  static int KeySlot(std::string_view key) {
    const auto open = key.find('{');
    if (open != std::string_view::npos) {
      const auto close = key.find('}', open + 1);
      if (close != std::string_view::npos && close > open + 1) {
        key = key.substr(open + 1, close - open - 1);
      }
    }
    return Crc16(key) % kSlots;
  }
  static std::uint16_t Crc16(std::string_view data) {
    std::uint16_t crc = 0;
    for (const unsigned char c : data) {
      crc ^= static_cast<std::uint16_t>(c << 8);
      for (int bit = 0; bit < 8; ++bit) {
        crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                             : static_cast<std::uint16_t>(crc << 1);
      }
    }
    return crc;
  }

  // The port of the live node that says it is the master serving `slot`; when none says so (its
  // master is down and not yet replaced), the master the live nodes name; -1 if none.
  int MasterOfSlot(int slot) const {
    std::vector<std::vector<Entry>> views;
    for (int port : LivePorts()) {
      views.push_back(Nodes(port));
      for (const auto& e : views.back()) {
        if (e.myself && e.Has("master") && e.Owns(slot)) return port;
      }
    }
    for (const auto& view : views) {
      for (const auto& e : view) {
        if (e.Has("master") && e.Owns(slot)) return e.port;
      }
    }
    return -1;
  }

  // SIGKILLs the master serving `slot`; returns its port.
  int KillMasterOfSlot(int slot) {
    const int port = MasterOfSlot(slot);
    if (port < 0) throw std::runtime_error("no master serves slot " + std::to_string(slot));
    Node(port).Stop(SIGKILL);
    return port;
  }

  // Waits until a live node other than `old_port` says it is the master serving `slot`, every
  // live node names it so and says cluster_state:ok; returns its port. Throws on timeout.
  int WaitForNewMaster(int slot, int old_port,
                       std::chrono::seconds timeout = std::chrono::seconds(20)) const {
    int found = -1;
    WaitFor(
        [&]() -> std::string {
          found = -1;
          std::vector<int> live;
          for (int port : LivePorts()) {
            if (port != old_port) live.push_back(port);
          }
          for (int port : live) {
            for (const auto& e : Nodes(port)) {
              if (e.myself && e.Has("master") && e.Owns(slot)) found = port;
            }
          }
          if (found < 0) return "no live node is the master of the slot yet";
          for (int port : live) {
            const auto state = Info(Text(Command(port, {"CLUSTER", "INFO"})))["cluster_state"];
            if (state != "ok") return std::to_string(port) + " says cluster_state:" + state;
            std::vector<int> owners;
            for (const auto& e : Nodes(port)) {
              if (e.Has("master") && !e.Has("fail") && e.Owns(slot)) owners.push_back(e.port);
            }
            if (owners != std::vector<int>{found}) {
              return std::to_string(port) + " does not name " + std::to_string(found) + " yet";
            }
          }
          return "";
        },
        timeout, "a new master of slot " + std::to_string(slot));
    return found;
  }

  // Starts a killed node again with its cluster config file (a killed master comes back as a
  // replica of the node that replaced it) and waits until the cluster is healthy again.
  void Restart(int port, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto& node = Node(port);
    if (node.running()) throw std::runtime_error("node " + std::to_string(port) + " is running");
    // Keys from before the kill would make it claim slots it no longer serves: start empty.
    std::error_code ec;
    std::filesystem::remove(WorkDir(port) + "/dump.rdb", ec);
    bool started = false;
    for (int attempt = 0; attempt < 5 && !started; ++attempt) {
      started = node.Start();
      if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (!started) throw std::runtime_error("node " + std::to_string(port) + " did not restart");
    WaitFor([&] { return NotHealthy(/*complete=*/false); }, timeout,
            "the cluster to take node " + std::to_string(port) + " back");
  }

  // One command to 127.0.0.1:PORT on a fresh synchronous connection; nullptr if nothing answers.
  static SyncReply Command(int port, const std::vector<std::string>& args) {
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) redisFree(c);
      return nullptr;
    }
    redisSetTimeout(c, timeval{5, 0});
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    redisFree(c);
    return SyncReply(r);
  }

  // A reply's text (status, string, error, verbatim), "" for anything else or no reply.
  static std::string Text(const SyncReply& r) {
    if (r == nullptr || r->str == nullptr) return "";
    return std::string(r->str, r->len);
  }

 private:
  struct TempDir {
    TempDir() {
      std::string pattern =
          (std::filesystem::temp_directory_path() / "sluice-redis-cluster-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
      path = pattern;
    }
    ~TempDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::string path;
  };

  // One line of CLUSTER NODES.
  struct Entry {
    std::string id;
    int port = 0;
    std::set<std::string> flags;
    bool myself = false;
    std::string master;
    std::vector<std::pair<int, int>> slots;  // first, last
    bool Has(const std::string& flag) const { return flags.count(flag) != 0; }
    bool Owns(int slot) const {
      return std::any_of(slots.begin(), slots.end(),
                         [&](const auto& r) { return r.first <= slot && slot <= r.second; });
    }
  };

  static std::vector<Entry> ParseNodes(const std::string& text) {
    std::vector<Entry> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string w; fields >> w;) f.push_back(w);
      if (f.size() < 8) continue;
      Entry e;
      e.id = f[0];
      const std::string address = f[1].substr(0, f[1].find('@'));  // ip:port@cport[,hostname]
      e.port = std::atoi(address.substr(address.rfind(':') + 1).c_str());
      std::istringstream flags(f[2]);
      for (std::string flag; std::getline(flags, flag, ',');) e.flags.insert(flag);
      e.myself = e.Has("myself");
      e.master = f[3];
      for (size_t i = 8; i < f.size(); ++i) {
        if (f[i].empty() || f[i][0] == '[') continue;  // a slot being migrated
        const auto dash = f[i].find('-');
        const int first = std::atoi(f[i].substr(0, dash).c_str());
        const int last =
            dash == std::string::npos ? first : std::atoi(f[i].substr(dash + 1).c_str());
        e.slots.emplace_back(first, last);
      }
      out.push_back(std::move(e));
    }
    return out;
  }

  static std::map<std::string, std::string> Info(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 1);
    }
    return out;
  }

  static std::vector<Entry> Nodes(int port) {
    return ParseNodes(Text(Command(port, {"CLUSTER", "NODES"})));
  }

  // Calls check() until it returns ""; otherwise what it returns is why not yet.
  template <typename Check>
  static void WaitFor(Check check, std::chrono::seconds timeout, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const std::string why = check();
      if (why.empty()) return;
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("timed out after " + std::to_string(timeout.count()) +
                                 " s waiting for " + what + " (last: " + why + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  std::string WorkDir(int port) const { return dir_.path + "/" + std::to_string(port); }

  // A node on fresh free ports (client and cluster bus), retried on others if it lost a race.
  std::unique_ptr<RedisServer> StartNode() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      const int port = FreePort();
      int bus = FreePort();
      while (bus == port) bus = FreePort();
      const std::string p = std::to_string(port);
      std::filesystem::create_directories(WorkDir(port));
      try {
        return std::make_unique<RedisServer>(
            port, std::vector<std::string>{
                      "--cluster-enabled", "yes", "--cluster-port", std::to_string(bus),
                      "--cluster-config-file", dir_.path + "/nodes-" + p + ".conf",
                      "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
                      "--repl-diskless-sync-delay", "0", "--dir", WorkDir(port), "--logfile",
                      dir_.path + "/redis-" + p + ".log", "--loglevel", "notice"});
      } catch (const std::runtime_error&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
    throw std::runtime_error("could not start a cluster node (5 attempts)");
  }

  // Runs a tool to completion (output to a log in the temporary folder); throws if it fails.
  void RunTool(std::vector<std::string> args, std::chrono::seconds timeout) const {
    const std::string log = dir_.path + "/" + args[0] + ".log";
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      dup2(out, 1);
      dup2(out, 2);
      execvp(args[0].c_str(), argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) != pid) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        throw std::runtime_error(args[0] + " did not finish: " + ReadFile(log));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error(args[0] + " failed: " + ReadFile(log));
    }
  }

  static std::string ReadFile(const std::string& path) {
    std::string out;
    if (FILE* f = fopen(path.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) out.append(buf, n);
      fclose(f);
    }
    return out;
  }

  RedisServer& Node(int port) const {
    for (const auto& n : nodes_) {
      if (n->port() == port) return *n;
    }
    throw std::runtime_error("no cluster node on port " + std::to_string(port));
  }

  std::vector<int> LivePorts() const {
    std::vector<int> out;
    for (const auto& n : nodes_) {
      if (n->running()) out.push_back(n->port());
    }
    return out;
  }

  // "" if every live node: says cluster_state:ok with all slots assigned; knows every node, and no
  // live one as failing; names the same live masters for the same slots; and, if a replica, is in
  // sync. `complete`: also `masters_` masters with `replicas_` replicas each. Else why not.
  std::string NotHealthy(bool complete) const {
    const std::vector<int> live = LivePorts();
    if (live.empty()) return "no node is running";
    const std::set<int> live_set(live.begin(), live.end());
    std::vector<std::tuple<std::vector<std::pair<int, int>>, int, std::string>> layout;
    bool first = true;
    for (int port : live) {
      const std::string at = std::to_string(port) + ": ";
      auto info = Info(Text(Command(port, {"CLUSTER", "INFO"})));
      if (info["cluster_state"] != "ok") return at + "cluster_state:" + info["cluster_state"];
      if (info["cluster_slots_assigned"] != std::to_string(kSlots)) {
        return at + info["cluster_slots_assigned"] + " slots assigned";
      }
      const auto view = Nodes(port);
      if (view.size() != nodes_.size()) {
        return at + "knows " + std::to_string(view.size()) + " nodes";
      }
      std::vector<std::tuple<std::vector<std::pair<int, int>>, int, std::string>> masters;
      for (const auto& e : view) {
        if (live_set.count(e.port) != 0 &&
            (e.Has("fail") || e.Has("fail?") || e.Has("handshake") || e.Has("noaddr"))) {
          return at + "flags " + std::to_string(e.port) + " as failing";
        }
        if (e.Has("master") && !e.slots.empty()) {
          if (live_set.count(e.port) == 0) return at + "a node that is down serves slots";
          masters.emplace_back(e.slots, e.port, e.id);
        }
      }
      std::sort(masters.begin(), masters.end());
      if (complete) {
        if (static_cast<int>(masters.size()) != masters_) return at + "too few masters";
        for (const auto& m : masters) {
          const auto n = std::count_if(view.begin(), view.end(), [&](const Entry& e) {
            return e.master == std::get<2>(m) && live_set.count(e.port) != 0;
          });
          if (n != replicas_) return at + "too few replicas of " + std::to_string(std::get<1>(m));
        }
      }
      if (first) {
        layout = masters;
        first = false;
      } else if (masters != layout) {
        return "the nodes do not agree yet on who serves which slots";
      }
      for (const auto& e : view) {
        if (!e.myself || !e.Has("slave")) continue;
        auto repl = Info(Text(Command(port, {"INFO", "replication"})));
        if (repl["master_link_status"] != "up" || repl["master_sync_in_progress"] != "0") {
          return at + "replica not in sync yet";
        }
      }
    }
    return "";
  }

  int masters_;
  int replicas_;
  TempDir dir_;  // before nodes_: removed after they are killed
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace sluice::testing
