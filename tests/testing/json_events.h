// nlohmann's SAX events written down as text, for comparing two producers of them (the plain
// check body reader against nlohmann's own parser): its tests and its fuzz target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace sluice::testing {

// Writes down every SAX event as text.
struct JsonEvents {
  std::vector<std::string> events;
  bool null() { return Add("null"); }
  bool boolean(bool v) { return Add(v ? "true" : "false"); }
  bool number_integer(int64_t v) { return Add("int " + std::to_string(v)); }
  bool number_unsigned(uint64_t v) { return Add("uint " + std::to_string(v)); }
  bool number_float(double, const std::string& s) { return Add("float " + s); }
  bool string(std::string& s) { return Add("string " + s); }
  bool binary(nlohmann::json::binary_t&) { return Add("binary"); }
  bool start_object(std::size_t) { return Add("{"); }
  bool key(std::string& k) { return Add("key " + k); }
  bool end_object() { return Add("}"); }
  bool start_array(std::size_t) { return Add("["); }
  bool end_array() { return Add("]"); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return Add("error");
  }
  bool Add(std::string e) {
    events.push_back(std::move(e));
    return true;
  }
};

// nlohmann's events for `text` (strict: the whole text must be one JSON value).
inline std::vector<std::string> NlohmannEvents(std::string_view text) {
  JsonEvents r;
  nlohmann::json::sax_parse(text.begin(), text.end(), &r, nlohmann::json::input_format_t::json,
                            true);
  return r.events;
}

}  // namespace sluice::testing
