#include "api/http/framing.h"

#include <array>

#include "base/strings.h"
#include "boost/beast/http/field.hpp"

namespace sluice::http {

namespace bhttp = boost::beast::http;

bool ValidHostValue(std::string_view host) {
  static constexpr auto kHostChars = [] {
    std::array<bool, 256> table{};
    for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
    for (int c = '0'; c <= '9'; ++c) table[c] = true;
    for (char c : std::string_view("-._~%!$&'()*+,;=:[]"))
      table[static_cast<unsigned char>(c)] = true;
    return table;
  }();
  for (char c : host) {
    if (!kHostChars[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bhttp::status CheckFraming(const bhttp::request_header<>& request) {
  // Host: exactly one in HTTP/1.1, at most one in HTTP/1.0.
  const size_t hosts = request.count(bhttp::field::host);
  if (hosts > 1 || (hosts == 0 && request.version() >= 11)) return bhttp::status::bad_request;
  if (hosts == 1) {
    const auto host = request[bhttp::field::host];
    if (!ValidHostValue(std::string_view(host.data(), host.size())))
      return bhttp::status::bad_request;
  }

  // Transfer-Encoding: the codings of every field line, in order, make one list.
  auto [first, last] = request.equal_range(bhttp::field::transfer_encoding);
  if (first == last) return bhttp::status::ok;
  if (request.version() < 11) return bhttp::status::bad_request;
  size_t codings = 0;
  size_t chunked = 0;
  bool last_is_chunked = false;
  bool unknown = false;
  for (auto it = first; it != last; ++it) {
    std::string_view list(it->value().data(), it->value().size());
    while (!list.empty()) {
      const size_t comma = list.find(',');
      const std::string_view element = TrimOws(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (element.empty()) continue;  // "a, , b": empty list elements are allowed and ignored
      ++codings;
      // transfer-coding = token *( OWS ";" OWS transfer-parameter ); `chunked` has none.
      last_is_chunked = EqualsIgnoreCase(element, "chunked");
      if (last_is_chunked) {
        ++chunked;
      } else if (EqualsIgnoreCase(TrimOws(element.substr(0, element.find(';'))), "chunked")) {
        return bhttp::status::bad_request;  // chunked with parameters: not a framing we know
      } else {
        unknown = true;
      }
    }
  }
  if (codings == 0 || !last_is_chunked || chunked != 1) return bhttp::status::bad_request;
  if (unknown) return bhttp::status::not_implemented;
  return bhttp::status::ok;
}

std::string_view TargetPath(std::string_view target) {
  if (!target.empty() && target.front() != '/') {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query]; the scheme is
    // case-insensitive. Anything else (asterisk-form, authority-form) routes nowhere.
    const size_t scheme_end = target.find("://");
    if (scheme_end != std::string_view::npos &&
        (EqualsIgnoreCase(target.substr(0, scheme_end), "http") ||
         EqualsIgnoreCase(target.substr(0, scheme_end), "https"))) {
      const std::string_view rest = target.substr(scheme_end + 3);
      const size_t path = rest.find_first_of("/?#");
      if (path == std::string_view::npos || rest[path] != '/') return "/";
      target = rest.substr(path);
    }
  }
  return target.substr(0, target.find('?'));
}

bool ExpectsContinue(const bhttp::request_header<>& request) {
  if (request.version() < 11) return false;
  const auto expect = request[bhttp::field::expect];
  return EqualsIgnoreCase(TrimOws(std::string_view(expect.data(), expect.size())), "100-continue");
}

}  // namespace sluice::http
