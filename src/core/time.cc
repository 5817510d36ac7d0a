#include "core/time.h"

#include <ctime>

namespace sluice {

Micros SystemClock::NowMicros() const {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<Micros>(ts.tv_sec) * kMicrosPerSecond + ts.tv_nsec / 1000;
}

}  // namespace sluice
