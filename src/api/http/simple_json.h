// The check body in its plainest form, read without a general JSON parser: an object whose values
// are strings of printable ASCII without escapes, or unsigned integers of at most 18 digits,
// with JSON's optional whitespace — what clients send almost always. For such a body SimpleBody
// produces exactly the SAX events nlohmann's parser would (the same handler then reads them), at
// a fraction of the cost: nlohmann's lexer sets itself up per parse (locale, token buffer) and
// that dominates for a 20-byte body. Anything else — escapes, non-ASCII, nested values, other
// numbers, any syntax error — is not in the form: Scan says so before any event, and nlohmann
// parses the body.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::http {

namespace simple_json_internal {
// A key or a value of a plain body.
struct Token {
  std::string_view text;  // a string's characters, without the quotes
  bool number = false;
  uint64_t value = 0;
};
}  // namespace simple_json_internal

class SimpleBody {
 public:
  // Whether `body` is in the plain form. The views it keeps point into `body`.
  bool Scan(std::string_view body);

  // Replays the scanned body into `sax` (nlohmann's SAX interface: start_object, key, string,
  // number_unsigned, end_object); false when the handler stopped the parse.
  template <typename Sax>
  bool Drive(Sax& sax) const {
    if (!sax.start_object(static_cast<std::size_t>(-1))) return false;
    std::string text;
    for (size_t i = 0; i < count_; ++i) {
      const auto& [key, value] = pairs_[i];
      text.assign(key.text);
      if (!sax.key(text)) return false;
      if (value.number) {
        if (!sax.number_unsigned(value.value)) return false;
      } else {
        text.assign(value.text);
        if (!sax.string(text)) return false;
      }
    }
    return sax.end_object();
  }

  // Fields a plain body may have; more and it is parsed the general way.
  static constexpr size_t kMaxFields = 16;

 private:
  using Token = simple_json_internal::Token;

  char Peek() const { return pos_ < body_.size() ? body_[pos_] : '\0'; }
  bool Take(char c);
  bool AtEnd();
  void SkipSpace();
  bool String(Token& out);
  bool Unsigned(Token& out);

  std::string_view body_;
  size_t pos_ = 0;
  std::array<std::pair<Token, Token>, kMaxFields> pairs_;
  size_t count_ = 0;
};

}  // namespace sluice::http
