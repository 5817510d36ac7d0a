#include "proxy/hop_by_hop.h"

#include <string>
#include <string_view>
#include <vector>

#include "base/strings.h"
#include "boost/beast/http/field.hpp"

namespace sluice::proxy {

namespace bhttp = boost::beast::http;

void RemoveHopByHop(bhttp::fields& fields) {
  // The names the Connection fields list (every Connection line, each a comma list; Beast's
  // field names compare case-insensitively). Proxy-Connection is read the same way: clients
  // that send it mean it as Connection.
  std::vector<std::string> named;
  for (const bhttp::field field : {bhttp::field::connection, bhttp::field::proxy_connection}) {
    auto [first, last] = fields.equal_range(field);
    for (auto it = first; it != last; ++it) {
      std::string_view list(it->value().data(), it->value().size());
      while (!list.empty()) {
        const size_t comma = list.find(',');
        const std::string_view token = TrimOws(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        if (!token.empty()) named.emplace_back(token);
      }
    }
  }
  for (const std::string& name : named) {
    fields.erase(boost::beast::string_view(name.data(), name.size()));
  }
  for (const bhttp::field field :
       {bhttp::field::connection, bhttp::field::keep_alive, bhttp::field::proxy_connection,
        bhttp::field::te, bhttp::field::trailer, bhttp::field::transfer_encoding,
        bhttp::field::upgrade, bhttp::field::proxy_authenticate,
        bhttp::field::proxy_authorization}) {
    fields.erase(field);
  }
}

}  // namespace sluice::proxy
