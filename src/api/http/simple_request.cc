#include "api/http/simple_request.h"

#include <array>

#include "api/http/framing.h"
#include "base/strings.h"

namespace sluice::http {

namespace {

// RFC 9110 §5.6.2: tchar, as a table (this runs over every byte of every field name).
constexpr auto kTokenChars = [] {
  std::array<bool, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();

bool IsTokenChar(unsigned char c) { return kTokenChars[c]; }

// Reads a decimal Content-Length of at most 18 digits (no sign, no spaces inside).
bool ParseLength(std::string_view s, size_t& out) {
  if (s.empty() || s.size() > 18) return false;
  size_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  out = n;
  return true;
}

}  // namespace

std::string_view SimpleRequest::Header(std::string_view name) const {
  for (size_t i = 0; i < field_count; ++i) {
    if (EqualsIgnoreCase(fields[i].first, name)) return fields[i].second;
  }
  return {};
}

bool ParseSimpleRequest(std::string_view bytes, const SimpleLimits& limits, SimpleRequest& out) {
  const size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos || head_end + 4 > limits.max_header_bytes) return false;
  const std::string_view head = bytes.substr(0, head_end + 2);  // every line with its CRLF

  // Request line.
  size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return false;
  out.method = line.substr(0, sp1);
  for (char c : out.method) {
    if (c < 'A' || c > 'Z') return false;
  }
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (out.target.empty() || out.target.front() != '/') return false;
  for (char c : out.target) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    out.version = 11;
  } else if (version == "HTTP/1.0") {
    out.version = 10;
  } else {
    return false;
  }

  // Header fields.
  out.field_count = 0;
  size_t hosts = 0;
  size_t lengths = 0;
  size_t length = 0;
  std::string_view connection;
  for (size_t pos = eol + 2; pos < head.size(); pos = eol + 2) {
    eol = head.find("\r\n", pos);
    const std::string_view field = head.substr(pos, eol - pos);
    const size_t colon = field.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;  // also obs-fold lines
    const std::string_view name = field.substr(0, colon);
    for (char c : name) {
      if (!IsTokenChar(static_cast<unsigned char>(c))) return false;
    }
    const std::string_view value = TrimOws(field.substr(colon + 1));
    for (char c : value) {
      if ((c < 0x20 && c != '\t') || c >= 0x7f) return false;  // controls, DEL, obs-text
    }
    if (out.field_count == SimpleRequest::kMaxFields ||
        out.field_count == limits.max_header_fields) {
      return false;
    }
    out.fields[out.field_count++] = {name, value};
    if (EqualsIgnoreCase(name, "host")) {
      if (++hosts > 1 || !ValidHostValue(value)) return false;
    } else if (EqualsIgnoreCase(name, "content-length")) {
      if (++lengths > 1 || !ParseLength(value, length)) return false;
    } else if (EqualsIgnoreCase(name, "connection")) {
      if (!connection.empty() || value.empty()) return false;
      connection = value;
    } else if (EqualsIgnoreCase(name, "transfer-encoding") || EqualsIgnoreCase(name, "expect") ||
               EqualsIgnoreCase(name, "upgrade")) {
      return false;
    }
  }
  if (out.version == 11 && hosts != 1) return false;

  if (connection.empty()) {
    out.keep_alive = out.version == 11;
  } else if (EqualsIgnoreCase(connection, "close")) {
    out.keep_alive = false;
  } else if (EqualsIgnoreCase(connection, "keep-alive")) {
    out.keep_alive = true;
  } else {
    return false;
  }

  if (length > limits.max_body_bytes) return false;
  const size_t body_start = head_end + 4;
  if (bytes.size() - body_start < length) return false;  // the body is not all here yet
  out.body = bytes.substr(body_start, length);
  out.size = body_start + length;
  return true;
}

}  // namespace sluice::http
