// Integer helpers with explicit overflow behaviour. The algorithms compute in int64 with 128-bit
// intermediates where a product can exceed 2^63, and saturate instead of wrapping.
#pragma once

#include <cstdint>
#include <limits>

namespace sluice::int_math {

inline constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// Clamps a 128-bit value into int64.
constexpr int64_t Saturate(__int128 v) {
  if (v > kMax) return kMax;
  if (v < kMin) return kMin;
  return static_cast<int64_t>(v);
}

constexpr int64_t SatAdd(int64_t a, int64_t b) { return Saturate(static_cast<__int128>(a) + b); }
constexpr int64_t SatSub(int64_t a, int64_t b) { return Saturate(static_cast<__int128>(a) - b); }
constexpr int64_t SatMul(int64_t a, int64_t b) { return Saturate(static_cast<__int128>(a) * b); }

// Floor and ceiling of a / b for b > 0, correct for negative a.
constexpr __int128 FloorDiv(__int128 a, __int128 b) {
  __int128 q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
constexpr __int128 CeilDiv(__int128 a, __int128 b) {
  __int128 q = a / b;
  return (a % b != 0 && a > 0) ? q + 1 : q;
}

constexpr int64_t Gcd(int64_t a, int64_t b) {
  while (b != 0) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

}  // namespace sluice::int_math
