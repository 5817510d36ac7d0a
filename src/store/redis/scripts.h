// The Lua scripts of the Redis store, embedded at build time from scripts/*.lua
// (see embed_scripts.cmake).
#pragma once

#include <string_view>

namespace sluice::redis {

// One script for every algorithm: common.lua, the six algorithms and charge.lua, concatenated.
// See charge.lua for its KEYS, ARGV and reply.
extern const std::string_view kChargeScript;
// Its SHA-1 in lowercase hex: the EVALSHA name.
extern const std::string_view kChargeScriptSha1;

}  // namespace sluice::redis
