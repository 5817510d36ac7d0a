// The hop-by-hop fields of RFC 9110 §7.6.1, which a proxy must not forward in either direction:
// they describe one connection (its persistence, its framing, its upgrades), not the message.
#pragma once

#include "boost/beast/http/fields.hpp"

namespace sluice::proxy {

// Removes from `fields`, in place:
//   - every field that a Connection field names (Connection: close, X-Foo removes X-Foo);
//   - Connection itself, Keep-Alive, Proxy-Connection (a non-standard Connection many clients
//     still send), TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate and
//     Proxy-Authorization (credentials for this hop, never for the next).
// Transfer-Encoding goes too: the gateway re-frames each message for the next hop (chunked or
// Content-Length, see proxy_server.cc). Content-Length is end to end and stays, except when a
// Connection field names it — which no sane peer does, and removing it then is what the RFC says.
// Read a message's keep-alive and chunked state before calling this.
void RemoveHopByHop(boost::beast::http::fields& fields);

}  // namespace sluice::proxy
