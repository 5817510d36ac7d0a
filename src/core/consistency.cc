#include "core/consistency.h"

#include <charconv>

namespace sluice {

std::optional<Overshoot> Overshoot::Parse(std::string_view text) {
  auto digits = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (!text.ends_with('%')) {
    if (!digits(text) || text.size() > 15) return std::nullopt;
    int64_t n = 0;
    std::from_chars(text.data(), text.data() + text.size(), n);
    return Count(n);
  }
  text.remove_suffix(1);
  const size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  if (!digits(whole) || whole.size() > 3 || fraction.size() > 4 ||
      (dot != std::string_view::npos && !digits(fraction))) {
    return std::nullopt;
  }
  int64_t ppm = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), ppm);
  ppm *= 10'000;
  int64_t scale = 1'000;
  for (char c : fraction) {
    ppm += (c - '0') * scale;
    scale /= 10;
  }
  if (ppm > kPerMillion) return std::nullopt;
  return PartsPerMillion(ppm);
}

std::string Overshoot::ToString() const {
  if (!share_) return std::to_string(value_);
  std::string out = std::to_string(value_ / 10'000);
  int64_t rest = value_ % 10'000;
  if (rest != 0) {
    std::string fraction = std::to_string(rest);
    fraction.insert(0, 4 - fraction.size(), '0');
    while (fraction.back() == '0') fraction.pop_back();
    out += "." + fraction;
  }
  return out + "%";
}

}  // namespace sluice
