#include "api/http/simple_json.h"

namespace sluice::http {

bool SimpleBody::Scan(std::string_view body) {
  body_ = body;
  pos_ = 0;
  count_ = 0;
  SkipSpace();
  if (!Take('{')) return false;
  SkipSpace();
  if (Take('}')) return AtEnd();
  while (true) {
    Token key;
    if (!String(key)) return false;
    SkipSpace();
    if (!Take(':')) return false;
    SkipSpace();
    Token value;
    if (Peek() == '"' ? !String(value) : !Unsigned(value)) return false;
    if (count_ == kMaxFields) return false;
    pairs_[count_++] = {key, value};
    SkipSpace();
    if (Take('}')) return AtEnd();
    if (!Take(',')) return false;
    SkipSpace();
  }
}

bool SimpleBody::Take(char c) {
  if (Peek() != c) return false;
  ++pos_;
  return true;
}

bool SimpleBody::AtEnd() {
  SkipSpace();
  return pos_ == body_.size();
}

void SimpleBody::SkipSpace() {
  while (pos_ < body_.size()) {
    const char c = body_[pos_];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    ++pos_;
  }
}

bool SimpleBody::String(Token& out) {
  if (!Take('"')) return false;
  const size_t start = pos_;
  for (; pos_ < body_.size(); ++pos_) {
    const auto c = static_cast<unsigned char>(body_[pos_]);
    if (c == '"') {
      out.text = body_.substr(start, pos_ - start);
      ++pos_;
      return true;
    }
    if (c < 0x20 || c > 0x7e || c == '\\') return false;  // controls, non-ASCII, escapes
  }
  return false;  // unterminated
}

bool SimpleBody::Unsigned(Token& out) {
  const size_t start = pos_;
  uint64_t value = 0;
  for (; pos_ < body_.size() && body_[pos_] >= '0' && body_[pos_] <= '9'; ++pos_) {
    value = value * 10 + static_cast<uint64_t>(body_[pos_] - '0');
  }
  const size_t digits = pos_ - start;
  // JSON has no leading zeros; 18 digits always fit; a fraction or an exponent is not plain.
  if (digits == 0 || digits > 18 || (digits > 1 && body_[start] == '0')) return false;
  const char next = Peek();
  if (next == '.' || next == 'e' || next == 'E') return false;
  out.number = true;
  out.value = value;
  return true;
}

}  // namespace sluice::http
