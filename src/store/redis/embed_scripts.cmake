# Build-time step (cmake -P): concatenates the Lua files named in SCRIPTS (separated by |, in order, one chunk, so
# later files see the earlier ones' locals) into OUTPUT, a C++ file defining the script text and
# its SHA-1 (what EVALSHA takes; Redis names a script by the SHA-1 of its body).
set(body "")
string(REPLACE "|" ";" script_list "${SCRIPTS}")
foreach(file IN LISTS script_list)
  file(READ "${file}" text)
  get_filename_component(name "${file}" NAME)
  string(APPEND body "-- ==== ${name} ====\n${text}\n")
endforeach()
string(SHA1 sha "${body}")
if(body MATCHES "\\)lua\"")
  message(FATAL_ERROR "a Lua script contains the raw string delimiter )lua\"")
endif()
file(WRITE "${OUTPUT}"
"// Generated from src/store/redis/scripts/*.lua by embed_scripts.cmake. Do not edit.
#include \"store/redis/scripts.h\"

namespace sluice::redis {

const std::string_view kChargeScript = R\"lua(${body})lua\";
const std::string_view kChargeScriptSha1 = \"${sha}\";

}  // namespace sluice::redis
")
