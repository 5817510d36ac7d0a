#include "api/http/request_target.h"

#include "api/http/framing.h"

namespace sluice::http {

namespace {

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      const int hi = i + 1 < in.size() ? HexDigit(in[i + 1]) : -1;
      const int lo = i + 2 < in.size() ? HexDigit(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (in[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

const std::string* RequestTarget::Param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

RequestTarget ParseRequestTarget(std::string_view target, std::string_view prefix) {
  RequestTarget out;
  const std::string_view path = TargetPath(target);
  for (std::string_view segment : Split(path.substr(std::min(prefix.size(), path.size())), '/')) {
    std::optional<std::string> decoded = PercentDecode(segment, /*plus_is_space=*/false);
    if (!decoded.has_value()) out.malformed = true;
    out.segments.push_back(decoded.value_or(""));
  }
  if (const size_t q = target.find('?'); q != std::string_view::npos) {
    for (std::string_view pair : Split(target.substr(q + 1), '&')) {
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      std::optional<std::string> name = PercentDecode(pair.substr(0, eq), true);
      std::optional<std::string> value =
          PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
      if (!name.has_value() || !value.has_value()) out.malformed = true;
      out.query.emplace_back(name.value_or(""), value.value_or(""));
    }
  }
  return out;
}

}  // namespace sluice::http
