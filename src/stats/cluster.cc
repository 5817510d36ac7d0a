#include "stats/cluster.h"

#include <unistd.h>

#include <memory>
#include <random>
#include <utility>

#include "base/strings.h"
#include "hiredis/hiredis.h"
#include "nlohmann/json.hpp"
#include "store/redis/resp.h"

namespace sluice::stats {

using json = nlohmann::json;

namespace {

constexpr int64_t kTtlSeconds = 65 * 60;
constexpr int64_t kRepublishSeconds = 60;  // how far back a failed publication is retried

int64_t NowSecond(const Recorder& r) {
  const Micros now = r.clock().NowMicros();
  return now / kMicrosPerSecond - (now % kMicrosPerSecond < 0 ? 1 : 0);
}
int64_t MinuteOfSecond(int64_t s) { return s / 60 - (s % 60 < 0 ? 1 : 0); }

std::string_view Str(const redisReply& r) {
  return r.str != nullptr ? std::string_view(r.str, r.len) : std::string_view();
}

json EncodeTop(const SpaceSaving& s) {
  json entries = json::array();
  for (const SpaceSaving::Entry& e : s.Top(s.size())) entries.push_back({e.key, e.count, e.error});
  return {{"floor", s.floor()}, {"total", s.total()}, {"entries", std::move(entries)}};
}

bool DecodeTop(const json& j, size_t capacity, SpaceSaving* out) {
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_array()) return false;
  std::vector<SpaceSaving::Entry> entries;
  for (const json& e : j["entries"]) {
    if (!e.is_array() || e.size() != 3 || !e[0].is_string() || !e[1].is_number_unsigned() ||
        !e[2].is_number_unsigned()) {
      return false;
    }
    entries.push_back({e[0].get<std::string>(), e[1].get<uint64_t>(), e[2].get<uint64_t>()});
  }
  // One more than the entries: the part is not "full", so its floor is the published one (the
  // floor of the summary it came from), not its least entry.
  *out = SpaceSaving::FromEntries(entries, j.value("floor", uint64_t{0}),
                                  j.value("total", uint64_t{0}),
                                  std::max(capacity, entries.size() + 1));
  return true;
}

}  // namespace

std::string NewServerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::mt19937_64 rng{std::random_device{}()};
  return Cat(host[0] != '\0' ? host : "sluice", ":", static_cast<int64_t>(getpid()), ":",
             static_cast<int64_t>(rng() % 0x10000));
}

std::string ClusterStats::EncodeCounts(const Counts& c) {
  json latency = json::object();
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    if (c.latency[i] != 0) latency[std::to_string(i)] = c.latency[i];
  }
  json rules = json::object();
  for (const auto& [id, rc] : c.by_rule) rules[id] = {rc.allowed, rc.rejected};
  return json{{"q", c.requests},         {"a", c.allowed},         {"r", c.rejected},
              {"b", c.blocked},          {"s", c.shadow_rejected}, {"e", c.errors},
              {"l", std::move(latency)}, {"u", std::move(rules)}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

bool ClusterStats::DecodeCounts(std::string_view text, Counts* out) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  auto n = [&](const char* k) {
    const auto it = j.find(k);
    return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : uint64_t{0};
  };
  out->requests = n("q");
  out->allowed = n("a");
  out->rejected = n("r");
  out->blocked = n("b");
  out->shadow_rejected = n("s");
  out->errors = n("e");
  if (auto it = j.find("l"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      size_t bucket = 0;
      try {
        bucket = std::stoul(k);
      } catch (...) {
        continue;
      }
      if (bucket < kLatencyBuckets && v.is_number_unsigned())
        out->latency[bucket] += v.get<uint64_t>();
    }
  }
  if (auto it = j.find("u"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (!v.is_array() || v.size() != 2 || !v[0].is_number_unsigned() ||
          !v[1].is_number_unsigned())
        continue;
      RuleCounts& rc = out->by_rule[k];
      rc.allowed += v[0].get<uint64_t>();
      rc.rejected += v[1].get<uint64_t>();
    }
  }
  return true;
}

ClusterStats::ClusterStats(Recorder& recorder, redis::Topology& topology, std::string key_prefix,
                           std::chrono::milliseconds timeout, std::string server_id)
    : recorder_(recorder),
      topology_(topology),
      prefix_(Cat(key_prefix, "{stats}:")),
      timeout_(timeout),
      server_id_(std::move(server_id)),
      group_(topology.GroupOf(prefix_)) {}

std::string ClusterStats::ServersKey() const { return Cat(prefix_, "servers"); }

std::string ClusterStats::Key(std::string_view kind, std::string_view server, int64_t n) const {
  return Cat(prefix_, kind, ":", server, ":", n);
}

redis::Deadline ClusterStats::NewDeadline() const {
  // Stats calls are not on the check path: they may take longer than a check's round trip.
  return redis::SteadyClock::now() + std::max(timeout_ * 4, std::chrono::milliseconds(200));
}

void ClusterStats::Publish() {
  const int64_t now = NowSecond(recorder_);
  // From the first second not known to be stored, and always the last two again: a check is
  // counted in the second it began, so one that ends after a publication adds to a second
  // already sent (HSET of the second's whole totals: sending it again is harmless).
  const int64_t through = published_through_->load(std::memory_order_acquire);
  const int64_t from = std::max(std::min(through + 1, now - 2), now - kRepublishSeconds);
  const int64_t to = now - 1;  // completed seconds only
  std::string commands;
  size_t replies = 0;
  redis::CommandWriter w(commands);
  auto command = [&](std::initializer_list<std::string_view> args) {
    w.Begin(args.size());
    for (std::string_view a : args) w.Arg(a);
    ++replies;
  };
  if (to >= from) {
    int64_t minute = -1;
    for (const Recorder::Second& s : recorder_.Seconds(from, to)) {
      if (s.counts.requests == 0) continue;
      const std::string key = Key("sec", server_id_, MinuteOfSecond(s.at));
      command({"HSET", key, std::to_string(s.at), EncodeCounts(s.counts)});
      if (MinuteOfSecond(s.at) != minute) {
        minute = MinuteOfSecond(s.at);
        command({"EXPIRE", key, std::to_string(kTtlSeconds)});
      }
    }
  }
  for (const Recorder::MinuteTop& m : recorder_.Minutes(MinuteOfSecond(now) - 1)) {
    if (m.requests.size() == 0) continue;
    const size_t n = recorder_.past_capacity();
    const std::string body = json{{"requests", EncodeTop(m.requests.Compact(n))},
                                  {"rejected", EncodeTop(m.rejected.Compact(n))}}
                                 .dump(-1, ' ', false, json::error_handler_t::replace);
    command({"SET", Key("top", server_id_, m.minute), body, "EX", std::to_string(kTtlSeconds)});
  }
  command({"ZADD", ServersKey(), std::to_string(now), server_id_});
  command({"ZREMRANGEBYSCORE", ServersKey(), "-inf", std::to_string(now - kTtlSeconds)});
  // The watermark moves only once Redis has taken the seconds: after a failure, the next
  // publication sends them again (up to kRepublishSeconds back).
  topology_.Execute(
      group_, std::move(commands), replies, NewDeadline(),
      [watermark = published_through_, to](absl::StatusOr<std::vector<redis::Reply>> result) {
        if (!result.ok()) return;
        int64_t seen = watermark->load(std::memory_order_relaxed);
        while (seen < to &&
               !watermark->compare_exchange_weak(seen, to, std::memory_order_release)) {
        }
      });
}

void ClusterStats::Servers(
    int64_t since, absl::AnyInvocable<void(absl::StatusOr<std::vector<std::string>>) &&> then) {
  std::string commands;
  redis::CommandWriter w(commands);
  w.Begin(4);
  w.Arg("ZRANGEBYSCORE");
  w.Arg(ServersKey());
  w.Arg(since);
  w.Arg("+inf");
  topology_.Execute(
      group_, std::move(commands), 1, NewDeadline(),
      [then = std::move(then)](absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
        if (!replies.ok()) return std::move(then)(replies.status());
        const redisReply& r = *replies->front();
        if (r.type != REDIS_REPLY_ARRAY) {
          return std::move(then)(absl::InternalError("unexpected reply to ZRANGEBYSCORE"));
        }
        std::vector<std::string> servers;
        for (size_t i = 0; i < r.elements; ++i) servers.emplace_back(Str(*r.element[i]));
        std::move(then)(std::move(servers));
      });
}

void ClusterStats::Seconds(int64_t from, int64_t to, Callback<std::vector<Recorder::Second>> done) {
  Servers(from, [this, from, to,
                 done = std::move(done)](absl::StatusOr<std::vector<std::string>> servers) mutable {
    if (!servers.ok()) return std::move(done)(servers.status());
    std::string commands;
    size_t replies = 0;
    redis::CommandWriter w(commands);
    for (const std::string& server : *servers) {
      for (int64_t m = MinuteOfSecond(from); m <= MinuteOfSecond(to); ++m) {
        w.Begin(2);
        w.Arg("HGETALL");
        w.Arg(Key("sec", server, m));
        ++replies;
      }
    }
    auto out = std::make_shared<std::vector<Recorder::Second>>(static_cast<size_t>(to - from + 1));
    for (int64_t s = from; s <= to; ++s) (*out)[static_cast<size_t>(s - from)].at = s;
    if (replies == 0) return std::move(done)(std::move(*out));
    topology_.Execute(group_, std::move(commands), replies, NewDeadline(),
                      [from, to, out, done = std::move(done)](
                          absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
                        if (!replies.ok()) return std::move(done)(replies.status());
                        for (const redis::Reply& reply : *replies) {
                          if (reply->type != REDIS_REPLY_ARRAY) continue;
                          for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                            int64_t at = 0;
                            try {
                              at = std::stoll(std::string(Str(*reply->element[i])));
                            } catch (...) {
                              continue;
                            }
                            if (at < from || at > to) continue;
                            Counts counts;
                            if (DecodeCounts(Str(*reply->element[i + 1]), &counts)) {
                              (*out)[static_cast<size_t>(at - from)].counts.Add(counts);
                            }
                          }
                        }
                        std::move(done)(std::move(*out));
                      });
  });
}

void ClusterStats::Window(int64_t window_seconds, Callback<Counts> done) {
  const int64_t now = NowSecond(recorder_);
  const int64_t window = std::clamp<int64_t>(window_seconds, 1, Recorder::kRingSeconds);
  Seconds(now - window + 1, now,
          [done = std::move(done)](absl::StatusOr<std::vector<Recorder::Second>> seconds) mutable {
            if (!seconds.ok()) return std::move(done)(seconds.status());
            Counts sum;
            for (const Recorder::Second& s : *seconds) sum.Add(s.counts);
            std::move(done)(std::move(sum));
          });
}

void ClusterStats::Top(Ranking ranking, int64_t minutes, Callback<SpaceSaving> done) {
  const int64_t now = NowSecond(recorder_);
  const int64_t last = MinuteOfSecond(now);
  const int64_t first = last - minutes;
  Servers(first * 60, [this, ranking, first, last, done = std::move(done)](
                          absl::StatusOr<std::vector<std::string>> servers) mutable {
    if (!servers.ok()) return std::move(done)(servers.status());
    std::string commands;
    size_t replies = 0;
    redis::CommandWriter w(commands);
    for (const std::string& server : *servers) {
      for (int64_t m = first; m <= last; ++m) {
        w.Begin(2);
        w.Arg("GET");
        w.Arg(Key("top", server, m));
        ++replies;
      }
    }
    const size_t capacity = recorder_.top_capacity();
    if (replies == 0) return std::move(done)(SpaceSaving(capacity));
    topology_.Execute(group_, std::move(commands), replies, NewDeadline(),
                      [ranking, capacity, done = std::move(done)](
                          absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
                        if (!replies.ok()) return std::move(done)(replies.status());
                        SpaceSaving merged(capacity);
                        for (const redis::Reply& reply : *replies) {
                          if (reply->type != REDIS_REPLY_STRING) continue;
                          const json j = json::parse(Str(*reply), nullptr, false);
                          const char* name =
                              ranking == Ranking::kRequests ? "requests" : "rejected";
                          if (!j.is_object() || !j.contains(name)) continue;
                          SpaceSaving part(1);
                          if (DecodeTop(j[name], 1, &part)) merged.Merge(part);
                        }
                        std::move(done)(std::move(merged));
                      });
  });
}

}  // namespace sluice::stats
