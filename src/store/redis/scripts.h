// The Lua scripts of the Redis store, embedded at build time from scripts/*.lua
// (see embed_scripts.cmake): common.lua, the six algorithms, charge.lua and lease.lua, as one
// chunk, in the two forms Redis runs Lua in.
#pragma once

#include <string_view>

namespace sluice::redis {

// EVAL scripts (Redis 6, or `store.scripts: eval`): the chunk, then the entry point. See
// charge.lua and lease.lua for their keys, arguments and replies.
extern const std::string_view kChargeScript;
extern const std::string_view kChargeScriptSha1;  // lowercase hex: the EVALSHA name
extern const std::string_view kLeaseScript;
extern const std::string_view kLeaseScriptSha1;

// The Redis Functions library (Redis 7): loaded once per node with FUNCTION LOAD, whose body
// runs once, so an FCALL runs only its own algorithm. Its name and its functions' names carry a
// hash of the scripts.
extern const std::string_view kFunctionLibrary;
extern const std::string_view kChargeFunction;  // FCALL name of charge.lua's `charge`
extern const std::string_view kLeaseFunction;   // FCALL name of lease.lua's `lease`

}  // namespace sluice::redis
