#include "stats/recorder.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>

#include "rules/counter_key.h"
#include "xxhash.h"

namespace sluice::stats {

namespace {

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

int64_t SecondOf(Micros t) { return FloorDiv(t, kMicrosPerSecond); }
int64_t MinuteOf(Micros t) { return FloorDiv(t, 60 * kMicrosPerSecond); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Undoes rules::internal::AppendKeyPart's percent-encoding.
std::string Unescape(std::string_view part) {
  std::string out;
  out.reserve(part.size());
  for (size_t i = 0; i < part.size(); ++i) {
    if (part[i] == '%' && i + 2 < part.size()) {
      const int hi = HexDigit(part[i + 1]);
      const int lo = HexDigit(part[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(part[i]);
  }
  return out;
}

}  // namespace

// ---- Latency histogram ----

size_t LatencyBucket(uint64_t micros) {
  if (micros < 4) return static_cast<size_t>(micros);
  const int exponent = std::bit_width(micros) - 1;  // >= 2
  const auto mantissa = static_cast<size_t>((micros >> (exponent - 2)) & 3);
  return std::min(static_cast<size_t>(4 * (exponent - 1)) + mantissa, kLatencyBuckets - 1);
}

uint64_t LatencyBucketLow(size_t bucket) {
  if (bucket < 4) return bucket;
  const size_t exponent = bucket / 4 + 1;
  return static_cast<uint64_t>(4 + bucket % 4) << (exponent - 2);
}

void Counts::Add(const Counts& other) {
  requests += other.requests;
  allowed += other.allowed;
  rejected += other.rejected;
  blocked += other.blocked;
  shadow_rejected += other.shadow_rejected;
  errors += other.errors;
  for (size_t i = 0; i < kLatencyBuckets; ++i) latency[i] += other.latency[i];
  for (const auto& [rule, counts] : other.by_rule) {
    RuleCounts& mine = by_rule[rule];
    mine.allowed += counts.allowed;
    mine.rejected += counts.rejected;
  }
}

double Counts::LatencyQuantileMs(double q) const {
  uint64_t total = 0;
  for (uint64_t n : latency) total += n;
  if (total == 0) return 0;
  // The rank of the quantile, then linear interpolation inside its bucket.
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    if (latency[i] == 0) continue;
    const double here = static_cast<double>(latency[i]);
    if (seen + here >= rank) {
      const double low = static_cast<double>(LatencyBucketLow(i));
      const double high = static_cast<double>(i + 1 < kLatencyBuckets ? LatencyBucketLow(i + 1)
                                                                      : 2 * LatencyBucketLow(i));
      const double micros = low + (high - low) * std::clamp((rank - seen) / here, 0.0, 1.0);
      return micros / 1000.0;
    }
    seen += here;
  }
  return static_cast<double>(LatencyBucketLow(kLatencyBuckets - 1)) / 1000.0;
}

void Counts::Clear() { *this = Counts{}; }

// ---- Recorder ----

Recorder::Recorder(const Clock& clock, Options options)
    : clock_(clock),
      options_(options),
      requests_(options.top_capacity),
      rejected_(options.top_capacity) {
  MutexLock lock(ring_mu_);
  ring_.resize(kRingSeconds);
}

Recorder::~Recorder() = default;

size_t Recorder::past_capacity() const { return std::max<size_t>(options_.top_capacity / 10, 64); }

Recorder::Shard& Recorder::ShardForThisThread() {
  thread_local const uint32_t index = next_shard_.fetch_add(1, std::memory_order_relaxed);
  return shards_[index % kShards];
}

void Recorder::Record(Micros now, Result result, bool shadow_rejected, bool store_error,
                      Micros latency, std::span<const RuleHit> rules) {
  const int64_t second = SecondOf(now);
  Shard& shard = ShardForThisThread();
  std::vector<Hit> full;
  int64_t full_minute = 0;
  {
    MutexLock lock(shard.mu);
    // Keys go to the summary of the minute they were counted in: a new minute flushes the
    // previous one's keys first.
    if (const int64_t minute = FloorDiv(second, 60); minute != shard.hits_minute) {
      if (!shard.hits.empty()) {
        full.swap(shard.hits);
        full_minute = shard.hits_minute;
      }
      shard.hits_minute = minute;
    }
    if (shard.second != second) {
      if (shard.second >= 0) FlushSecond(shard);
      shard.second = second;
    }
    Counts& c = shard.pending;
    ++c.requests;
    switch (result) {
      case Result::kAllowed:
        ++c.allowed;
        break;
      case Result::kRejected:
        ++c.rejected;
        break;
      case Result::kBlocked:
        ++c.blocked;
        break;
      case Result::kUnavailable:
        break;
    }
    if (shadow_rejected) ++c.shadow_rejected;
    if (store_error) ++c.errors;
    ++c.latency[LatencyBucket(static_cast<uint64_t>(std::max<Micros>(latency, 0)))];
    for (const RuleHit& hit : rules) {
      auto it = c.by_rule.find(absl::string_view(hit.rule_id.data(), hit.rule_id.size()));
      if (it == c.by_rule.end()) {
        const std::string_view id =
            c.by_rule.size() < kMaxRulesPerSecond ? hit.rule_id : kOtherRule;
        it = c.by_rule.try_emplace(std::string(id)).first;
      }
      if (hit.rejected && hit.enforced) {
        ++it->second.rejected;
      } else if (result == Result::kAllowed) {
        ++it->second.allowed;
      }
      if (hit.key != nullptr) {
        std::string& key = *hit.key;
        if (key.size() > kMaxKeyBytes) {
          // A key holds the request's own values: memory is bounded in bytes too. The cut key
          // keeps a hash of the whole, so that two long keys stay apart.
          const uint64_t whole = XXH3_64bits(key.data(), key.size());  // alike on every server
          key.resize(kMaxKeyBytes - 20);
          key += "~cut:";
          constexpr char kHex[] = "0123456789abcdef";
          for (int shift = 60; shift >= 0; shift -= 4) key.push_back(kHex[(whole >> shift) & 15]);
        }
        shard.hits.push_back(Hit{std::move(key), hit.rejected});
      }
    }
    if (full.empty() && shard.hits.size() >= kFlushKeys) {
      full.reserve(kFlushKeys * 2);
      full.swap(shard.hits);
      full_minute = shard.hits_minute;
    }
  }
  if (!full.empty()) ApplyHits(full, full_minute);
}

void Recorder::FlushSecond(Shard& shard) {
  MutexLock lock(ring_mu_);
  Slot& slot =
      ring_[static_cast<size_t>(((shard.second % kRingSeconds) + kRingSeconds) % kRingSeconds)];
  if (slot.at != shard.second) {
    // Only a newer second replaces a slot: a shard that kept an old second for long (no checks
    // since) must not overwrite the present.
    if (slot.at > shard.second) {
      shard.pending.Clear();
      return;
    }
    slot.at = shard.second;
    slot.counts.Clear();
  }
  slot.counts.Add(shard.pending);
  shard.pending.Clear();
}

void Recorder::ApplyHits(std::vector<Hit>& hits, int64_t minute) {
  MutexLock lock(top_mu_);
  // Keys a shard held since a minute now past (it had no check since) count in the current
  // minute: finished minutes are immutable, shared with queries that merge them unlocked.
  RotateLocked(minute);
  for (Hit& hit : hits) {
    const uint64_t hash = SpaceSaving::Hash(hit.key);
    requests_.Add(hit.key, hash, 1);
    if (hit.rejected) rejected_.Add(hit.key, hash, 1);
  }
  hits.clear();
}

void Recorder::RotateLocked(int64_t minute) {
  if (minute_ == minute) return;
  if (minute_ >= 0 && minute > minute_) {
    auto done = std::make_shared<MinuteTop>();
    done->minute = minute_;
    done->requests = requests_.Compact(past_capacity());
    done->rejected = rejected_.Compact(past_capacity());
    past_.push_back(std::move(done));
    requests_ = SpaceSaving(options_.top_capacity);
    rejected_ = SpaceSaving(options_.top_capacity);
  }
  if (minute > minute_) minute_ = minute;
  while (!past_.empty() && past_.front()->minute < minute_ - kKeptMinutes) past_.pop_front();
}

void Recorder::FlushAll() {
  const int64_t now_second = SecondOf(clock_.NowMicros());
  for (Shard& shard : shards_) {
    std::vector<Hit> hits;
    int64_t minute = 0;
    {
      MutexLock lock(shard.mu);
      minute = shard.hits_minute;
      if (shard.second >= 0) {
        FlushSecond(shard);
        // Keeps counting the same second if it is still the current one.
        if (shard.second != now_second) shard.second = -1;
      }
      hits.swap(shard.hits);
    }
    if (!hits.empty()) ApplyHits(hits, minute);
  }
}

void Recorder::Tick() {
  FlushAll();
  MutexLock lock(top_mu_);
  RotateLocked(MinuteOf(clock_.NowMicros()));
}

Counts Recorder::Window(int64_t window_seconds) {
  FlushAll();
  const int64_t now = SecondOf(clock_.NowMicros());
  const int64_t from = now - std::clamp<int64_t>(window_seconds, 1, kRingSeconds) + 1;
  Counts out;
  MutexLock lock(ring_mu_);
  for (const Slot& slot : ring_) {
    if (slot.at >= from && slot.at <= now) out.Add(slot.counts);
  }
  return out;
}

std::vector<Recorder::Second> Recorder::Seconds(int64_t from, int64_t to) {
  FlushAll();
  std::vector<Second> out;
  if (to < from) return out;
  from = std::max(from, to - kRingSeconds + 1);
  out.resize(static_cast<size_t>(to - from + 1));
  for (int64_t s = from; s <= to; ++s) out[static_cast<size_t>(s - from)].at = s;
  MutexLock lock(ring_mu_);
  for (const Slot& slot : ring_) {
    if (slot.at >= from && slot.at <= to)
      out[static_cast<size_t>(slot.at - from)].counts.Add(slot.counts);
  }
  return out;
}

SpaceSaving Recorder::Top(Ranking ranking, int64_t minutes) {
  FlushAll();
  // Under the lock, only a copy of the current minute and references to the finished ones
  // (immutable): the merge runs unlocked, so checks flushing keys do not wait for it.
  std::optional<SpaceSaving> current;
  std::vector<std::shared_ptr<const MinuteTop>> past;
  {
    MutexLock lock(top_mu_);
    RotateLocked(MinuteOf(clock_.NowMicros()));
    current = ranking == Ranking::kRequests ? requests_ : rejected_;
    for (const std::shared_ptr<const MinuteTop>& m : past_) {
      if (m->minute >= minute_ - minutes) past.push_back(m);
    }
  }
  std::vector<const SpaceSaving*> parts = {&*current};
  for (const auto& m : past) {
    parts.push_back(ranking == Ranking::kRequests ? &m->requests : &m->rejected);
  }
  return SpaceSaving::MergeAll(parts, options_.top_capacity);
}

std::vector<Recorder::MinuteTop> Recorder::Minutes(int64_t from_minute) {
  FlushAll();
  MutexLock lock(top_mu_);
  RotateLocked(MinuteOf(clock_.NowMicros()));
  std::vector<MinuteTop> out;
  for (const std::shared_ptr<const MinuteTop>& past : past_) {
    if (past->minute >= from_minute) out.push_back(*past);
  }
  if (minute_ >= from_minute) {
    MinuteTop current;
    current.minute = minute_;
    current.requests = requests_.Compact(past_capacity());
    current.rejected = rejected_.Compact(past_capacity());
    out.push_back(std::move(current));
  }
  return out;
}

size_t Recorder::top_entries(Ranking ranking) {
  MutexLock lock(top_mu_);
  size_t n = ranking == Ranking::kRequests ? requests_.size() : rejected_.size();
  for (const std::shared_ptr<const MinuteTop>& past : past_) {
    n += ranking == Ranking::kRequests ? past->requests.size() : past->rejected.size();
  }
  return n;
}

// ---- Counter keys ----

DecodedKey DecodeCounterKey(std::string_view key) {
  DecodedKey out;
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t bar = key.find('|', start);
    parts.push_back(key.substr(start, bar == std::string_view::npos ? bar : bar - start));
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  if (parts.size() < 2) {
    out.rule_id = std::string(key);
    return out;
  }
  out.rule_id = Unescape(parts[1]);  // the rule id, or the Envoy domain
  for (size_t i = 2; i < parts.size(); ++i) {
    // '=' is escaped inside parts, '~' is not: a name may hold '~', so '=' decides first ('~'
    // separates only an Envoy shared counter's name from its pattern, which has no '=').
    size_t sep = parts[i].find('=');
    if (sep == std::string_view::npos) sep = parts[i].find('~');
    if (sep == std::string_view::npos) continue;  // the limit's identity
    out.attributes.emplace_back(Unescape(parts[i].substr(0, sep)),
                                Unescape(parts[i].substr(sep + 1)));
  }
  return out;
}

std::string RuleKeyPrefix(std::string_view rule_id) {
  std::string out = "rule|";
  rules::internal::AppendKeyPart(&out, rule_id);
  out.push_back('|');
  return out;
}

}  // namespace sluice::stats
