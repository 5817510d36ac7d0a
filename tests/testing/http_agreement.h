// Whether the fast path's parse of a request (api/http/simple_request.h) is what Beast's parser,
// the general path, reads from the same bytes: for its tests and its fuzz target.
#pragma once

#include <string>
#include <string_view>

#include "api/http/simple_request.h"
#include "base/strings.h"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"

namespace sluice::testing {

// "" when Beast reads `bytes` (which the fast path parsed into `fast`) as one complete request
// of the same length, method, target, version, body and keep-alive; else what differs.
inline std::string DisagreementWithBeast(std::string_view bytes, const http::SimpleRequest& fast) {
  boost::beast::http::request_parser<boost::beast::http::string_body> beast;
  beast.eager(true);
  boost::beast::error_code ec;
  const size_t used = beast.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec) return "Beast refuses it: " + ec.message();
  if (!beast.is_done()) return "Beast reads an incomplete request";
  const auto& req = beast.get();
  auto view = [](auto s) { return std::string_view(s.data(), s.size()); };
  std::string diff;
  auto differ = [&](std::string_view what, auto a, auto b) {
    if (a != b) diff += Cat(what, " (Beast ", a, ", fast path ", b, ") ");
  };
  differ("length", used, fast.size);
  differ("method", view(req.method_string()), fast.method);
  differ("target", view(req.target()), fast.target);
  differ("version", req.version(), fast.version);
  differ("body", std::string_view(req.body()), fast.body);
  differ("keep-alive", int{req.keep_alive()}, int{fast.keep_alive});
  return diff;
}

}  // namespace sluice::testing
