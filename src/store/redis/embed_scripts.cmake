# Build-time step (cmake -P): concatenates the Lua files named in SCRIPTS (separated by |, in
# order, one chunk, so later files see the earlier ones' locals) and writes OUTPUT, a C++ file
# defining the forms Redis takes them in:
#   - two EVAL scripts, the chunk plus `return charge(KEYS, ARGV)` or `return lease(KEYS, ARGV)`,
#     with their SHA-1s (what EVALSHA takes: Redis names a script by the SHA-1 of its text);
#   - one Redis Functions library (FUNCTION LOAD), the chunk plus the registration of both entry
#     points. Its name and its functions' names carry the chunk's SHA-1, so that servers running
#     different versions of the scripts on one Redis each call their own.
set(body "")
string(REPLACE "|" ";" script_list "${SCRIPTS}")
foreach(file IN LISTS script_list)
  file(READ "${file}" text)
  get_filename_component(name "${file}" NAME)
  string(APPEND body "-- ==== ${name} ====\n${text}\n")
endforeach()
string(SHA1 body_sha "${body}")
string(SUBSTRING "${body_sha}" 0 16 version)
set(charge_script "${body}return charge(KEYS, ARGV)\n")
set(lease_script "${body}return lease(KEYS, ARGV)\n")
string(SHA1 charge_sha "${charge_script}")
string(SHA1 lease_sha "${lease_script}")
set(library "#!lua name=sluice_${version}\n${body}\
redis.register_function('sluice_charge_${version}', charge)\n\
redis.register_function('sluice_lease_${version}', lease)\n")
if(body MATCHES "\\)lua\"")
  message(FATAL_ERROR "a Lua script contains the raw string delimiter )lua\"")
endif()
file(WRITE "${OUTPUT}"
"// Generated from src/store/redis/scripts/*.lua by embed_scripts.cmake. Do not edit.
#include \"store/redis/scripts.h\"

namespace sluice::redis {

const std::string_view kChargeScript = R\"lua(${charge_script})lua\";
const std::string_view kChargeScriptSha1 = \"${charge_sha}\";
const std::string_view kLeaseScript = R\"lua(${lease_script})lua\";
const std::string_view kLeaseScriptSha1 = \"${lease_sha}\";
const std::string_view kFunctionLibrary = R\"lua(${library})lua\";
const std::string_view kChargeFunction = \"sluice_charge_${version}\";
const std::string_view kLeaseFunction = \"sluice_lease_${version}\";

}  // namespace sluice::redis
")
