#include "rules/match_index.h"

#include <algorithm>

#include "rules/strings.h"

namespace sluice::rules::internal {

namespace {

std::string_view IpKey(const IpAddress& ip) {
  return {reinterpret_cast<const char*>(ip.bytes.data()), ip.bytes.size()};
}

// How well a pattern narrows the candidates; 0 = not indexable. Exact identities (user_id,
// api_key) narrow most; tier and method have few distinct values, so a rule that also names an
// endpoint is better filed under the endpoint.
int Selectivity(const AttributePattern& p) {
  switch (p.kind()) {
    case AttributePattern::Kind::kExact:
      switch (p.attribute().attribute) {
        case Attribute::kUserId:
        case Attribute::kApiKey:
          return 100;
        case Attribute::kEndpoint:
          return 95;
        case Attribute::kHeader:
          return 90;
        case Attribute::kTier:
          return 70;
        case Attribute::kMethod:
          return 60;
        case Attribute::kIpAddress:
          return 0;  // ip_address patterns are never kExact
      }
      return 0;
    case AttributePattern::Kind::kCidr:
      return 40 + p.cidr().prefix_bits / 3;  // longer prefixes narrow more; /128 scores 82
    case AttributePattern::Kind::kGlob: {
      // A case-insensitive glob's prefix would need a lowered request value; methods seldom
      // use globs, so they are not worth it.
      const size_t prefix = p.glob().literal_prefix().size();
      if (p.glob().case_insensitive() || prefix == 0) return 0;
      return 20 + static_cast<int>(std::min<size_t>(prefix, 30));
    }
  }
  return 0;
}

void Append(const std::vector<uint32_t>* ids, Candidates& out) {
  if (ids != nullptr) out.insert(out.end(), ids->begin(), ids->end());
}

}  // namespace

PreparedRequest::PreparedRequest(const RequestAttributes& a) : attributes(a) {
  if (a.ip.has_value()) {
    ip = &*a.ip;
  } else if (ParseIp(a.ip_address, &parsed_ip_)) {
    ip = &parsed_ip_;
  }
  method_upper = internal::AsciiUpper(a.method);
}

void MatchIndex::Add(const Match& match, uint32_t id) {
  const AttributePattern* best = nullptr;
  int best_score = 0;
  for (const AttributePattern& p : match) {
    const int score = Selectivity(p);
    if (score > best_score) {
      best = &p;
      best_score = score;
    }
  }
  if (best == nullptr) {
    scan_.push_back(id);
    return;
  }
  const AttributeRef& ref = best->attribute();
  if (best->kind() == AttributePattern::Kind::kCidr) {
    const int bits = best->cidr().prefix_bits;
    auto it = std::lower_bound(networks_.begin(), networks_.end(), bits,
                               [](const NetworkIndex& n, int b) { return n.prefix_bits < b; });
    if (it == networks_.end() || it->prefix_bits != bits) {
      it = networks_.insert(it, NetworkIndex{.prefix_bits = bits, .networks = {}});
    }
    it->networks[IpKey(best->cidr().network)].push_back(id);
    return;
  }
  StringIndex& index = ref.attribute == Attribute::kHeader
                           ? headers_[ref.header]
                           : fixed_[static_cast<size_t>(ref.attribute)];
  if (best->kind() == AttributePattern::Kind::kExact) {
    index.exact[best->exact()].push_back(id);
    return;
  }
  const std::string& prefix = best->glob().literal_prefix();
  index.by_prefix[prefix].push_back(id);
  auto& lengths = index.prefix_lengths;
  const auto pos = std::lower_bound(lengths.begin(), lengths.end(), prefix.size());
  if (pos == lengths.end() || *pos != prefix.size()) lengths.insert(pos, prefix.size());
}

void MatchIndex::StringIndex::Lookup(std::string_view value, Candidates& out) const {
  if (value.empty()) return;  // empty is absent: nothing filed under this attribute can match
  if (!exact.empty()) {
    if (const auto it = exact.find(value); it != exact.end()) Append(&it->second, out);
  }
  // One hash lookup per distinct prefix length: a few, however many globs there are.
  for (size_t length : prefix_lengths) {
    if (length > value.size()) break;
    if (const auto it = by_prefix.find(value.substr(0, length)); it != by_prefix.end()) {
      Append(&it->second, out);
    }
  }
}

void MatchIndex::Lookup(const PreparedRequest& request, Candidates& out) const {
  Append(&scan_, out);
  const RequestAttributes& a = request.attributes;
  for (int i = 0; i < kNumFixedAttributes; ++i) {
    const auto attribute = static_cast<Attribute>(i);
    fixed_[i].Lookup(
        attribute == Attribute::kMethod ? std::string_view(request.method_upper) : a.Get(attribute),
        out);
  }
  if (!headers_.empty()) {
    for (const auto& [name, value] : a.headers()) {
      if (const auto it = headers_.find(name); it != headers_.end()) {
        it->second.Lookup(value, out);
      }
    }
  }
  if (request.ip != nullptr) {
    for (const NetworkIndex& n : networks_) {
      const IpAddress masked = request.ip->Masked(n.prefix_bits);
      if (const auto it = n.networks.find(IpKey(masked)); it != n.networks.end()) {
        Append(&it->second, out);
      }
    }
  }
}

}  // namespace sluice::rules::internal
