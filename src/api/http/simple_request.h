// The fast path's request parser: a request in the plainest form HTTP/1.1 allows, parsed in place
// from the connection's read buffer with no allocation. It accepts a strict subset of what the
// general path (Beast's parser plus framing.h) accepts, and declines everything else, so that a
// declined request is parsed again, from the same bytes, by the general path: the fast path
// never has to answer an unusual request, and never frames one differently.
//
// Taken: a request line `METHOD SP origin-form SP HTTP/1.x CRLF` (method in upper-case letters,
// target of visible ASCII starting with '/'); header lines `token ":" OWS value OWS CRLF` with
// values of visible ASCII, spaces and tabs; exactly one valid Host in HTTP/1.1 (at most one in
// HTTP/1.0); no Transfer-Encoding, no Expect, no Upgrade; at most one Content-Length, digits only,
// within the body limit; a Connection field only as a lone `close` or `keep-alive`; the whole
// head within the header limits; and all of it, body included, already in the buffer.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <utility>

namespace sluice::http {

struct SimpleLimits {
  size_t max_header_bytes = 16 * 1024;
  size_t max_header_fields = 100;
  size_t max_body_bytes = 64 * 1024;
};

struct SimpleRequest {
  // More fields than this and the request goes the general way.
  static constexpr size_t kMaxFields = 32;

  std::string_view method;
  std::string_view target;
  unsigned version = 11;   // 10 or 11, as Beast counts
  bool keep_alive = true;  // HTTP/1.1 unless `Connection: close`; HTTP/1.0 only when asked
  std::string_view body;
  size_t size =
      0;  // bytes of the request, head and body: what the buffer gives up once it is taken
  std::array<std::pair<std::string_view, std::string_view>, kMaxFields> fields;
  size_t field_count = 0;

  // The value of the first field named `name` (case-insensitive), empty when absent.
  std::string_view Header(std::string_view name) const;
};

// Parses one request from the start of `bytes` into `out` (views into `bytes`). False when the
// request is not in the form above, or not all there yet: the general path takes it then.
bool ParseSimpleRequest(std::string_view bytes, const SimpleLimits& limits, SimpleRequest& out);

}  // namespace sluice::http
