// The framing rules of RFC 9112 that Beast's parser leaves to its user, as pure functions over a
// parsed request header: which Transfer-Encoding a request may carry, the Host field, the path
// of a request target, Expect. The server applies them before it reads a body.
#pragma once

#include <string_view>

#include "boost/beast/http/message.hpp"
#include "boost/beast/http/status.hpp"

namespace sluice::http {

// What the header says about how to read the request, or why not to:
//   400  a Transfer-Encoding that does not end in exactly one `chunked` (RFC 9112 §6.3: the
//        body's length cannot be known), one in an HTTP/1.0 request (§6.1), no Host in an
//        HTTP/1.1 request, more than one Host, or a Host value that is not a host[:port] (§3.2);
//   501  a transfer coding other than `chunked` before it (gzip, deflate, …): Sluice applies
//        none, and decoding `gzip, chunked` as plain chunked would hand the handler gzip bytes.
// `ok` otherwise. Either refusal ends the connection: what follows cannot be framed. Takes the
// header alone, so that the API server (string bodies) and the gateway (streamed bodies) share it.
boost::beast::http::status CheckFraming(const boost::beast::http::request_header<>& request);

// A Host value: uri-host [":" port] (RFC 9110 §7.2), checked by its characters only — reg-name
// (unreserved, pct-encoded, sub-delims), an IP literal in brackets, and the port's colon. Enough
// to refuse what could only be an attack (spaces, '/', '@', controls); Sluice routes by path
// and never by host.
bool ValidHostValue(std::string_view host);

// The path of a request target, for routing: the query cut off, and for an absolute-form target
// ("http://host:port/path?query", RFC 9112 §3.2.2) the scheme and authority too ("/" when the
// target has no path). Other forms come back as they are (without the query).
std::string_view TargetPath(std::string_view target);

// Whether an HTTP/1.1 request expects `100 Continue` before it sends its body (RFC 9110
// §10.1.1). HTTP/1.0 requests never do: their expectation must be ignored.
bool ExpectsContinue(const boost::beast::http::request_header<>& request);

}  // namespace sluice::http
