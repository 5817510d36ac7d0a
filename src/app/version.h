#pragma once

namespace sluice::app {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace sluice::app
