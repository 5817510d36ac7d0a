#include "api/http/ui_routes.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "api/http/ui_assets.h"
#include "nlohmann/json.hpp"

namespace sluice::http {
namespace {

namespace bhttp = boost::beast::http;

Request Get(std::string target, bhttp::verb method = bhttp::verb::get) {
  Request request(method, target, 11);
  request.set(bhttp::field::host, "localhost");
  return request;
}

std::string Header(const Response& res, std::string_view name) {
  auto it = res.find(boost::beast::string_view(name.data(), name.size()));
  return it == res.end() ? "<absent>" : std::string(it->value());
}

// Verifies which paths the dashboard owns: /ui and what is under /ui/, nothing that merely
// starts with the same letters.
TEST(UiRoutesTest, OwnsUiAndBelowOnly) {
  EXPECT_TRUE(IsUiPath("/ui"));
  EXPECT_TRUE(IsUiPath("/ui/"));
  EXPECT_TRUE(IsUiPath("/ui/app.js"));
  EXPECT_FALSE(IsUiPath("/uix"));
  EXPECT_FALSE(IsUiPath("/u"));
  EXPECT_FALSE(IsUiPath("/v1/ui"));
}

// Verifies that /ui redirects to /ui/, so that the page's relative URLs resolve under it.
TEST(UiRoutesTest, RedirectsUiToUiSlash) {
  const Response res = ServeUi(Get("/ui?x=1"));
  EXPECT_EQ(res.result(), bhttp::status::moved_permanently);
  EXPECT_EQ(Header(res, "Location"), "/ui/");
}

// Verifies that /ui/ is index.html with every header the contract of ui_routes.h lists.
TEST(UiRoutesTest, ServesIndexWithSecurityHeaders) {
  const Response res = ServeUi(Get("/ui/"));
  ASSERT_EQ(res.result(), bhttp::status::ok);
  EXPECT_EQ(Header(res, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(res.body().find("<!doctype html>"), std::string::npos);
  EXPECT_EQ(Header(res, "Content-Security-Policy"), kUiContentSecurityPolicy);
  EXPECT_EQ(Header(res, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(Header(res, "Cache-Control"), "no-cache");
  EXPECT_EQ(Header(res, "ETag").front(), '"');
  EXPECT_EQ(ServeUi(Get("/ui/index.html")).body(), res.body());
  // No inline script may run under the policy: the page must not need one.
  EXPECT_EQ(std::string(kUiContentSecurityPolicy).find("unsafe"), std::string::npos);
  EXPECT_EQ(res.body().find("<script>"), std::string::npos);
}

// Verifies that every compiled-in asset is served at its path with the type of its extension
// and an ETag of its own, and that the HEAD answer is GET's.
TEST(UiRoutesTest, ServesEveryAssetWithItsType) {
  ASSERT_FALSE(UiAssets().empty());
  std::set<std::string> etags;
  for (const UiAsset& asset : UiAssets()) {
    const Response res = ServeUi(Get("/ui/" + std::string(asset.path)));
    ASSERT_EQ(res.result(), bhttp::status::ok) << asset.path;
    EXPECT_EQ(res.body(), asset.body) << asset.path;
    EXPECT_EQ(Header(res, "Content-Type"), asset.content_type) << asset.path;
    EXPECT_EQ(Header(res, "ETag"), asset.etag) << asset.path;
    if (asset.path.ends_with(".js")) {
      EXPECT_EQ(asset.content_type, "text/javascript; charset=utf-8");
    } else if (asset.path.ends_with(".css")) {
      EXPECT_EQ(asset.content_type, "text/css; charset=utf-8");
    }
    etags.insert(std::string(asset.etag));
    const Response head = ServeUi(Get("/ui/" + std::string(asset.path), bhttp::verb::head));
    EXPECT_EQ(head.result(), bhttp::status::ok);
    EXPECT_EQ(Header(head, "ETag"), asset.etag);
  }
  EXPECT_EQ(etags.size(), UiAssets().size()) << "two assets share an entity tag";
}

// Verifies If-None-Match: the asset's own tag (strong or weak, alone or in a list, or `*`) is a
// 304 with no body; another tag is the full answer.
TEST(UiRoutesTest, RevalidatesWithIfNoneMatch) {
  const std::string etag(UiAssets().front().etag);
  const std::string target = "/ui/" + std::string(UiAssets().front().path);
  for (const std::string& header :
       {etag, "W/" + etag, "\"other\", " + etag, std::string("*"), " " + etag + " "}) {
    Request request = Get(target);
    request.set(bhttp::field::if_none_match, header);
    const Response res = ServeUi(request);
    EXPECT_EQ(res.result(), bhttp::status::not_modified) << header;
    EXPECT_TRUE(res.body().empty()) << header;
    EXPECT_EQ(Header(res, "ETag"), etag);
    EXPECT_EQ(Header(res, "Cache-Control"), "no-cache");
  }
  Request request = Get(target);
  request.set(bhttp::field::if_none_match, "\"0000000000000000\"");
  EXPECT_EQ(ServeUi(request).result(), bhttp::status::ok);
}

// Verifies that an unknown asset is a 404 error object, and that no path escapes ui/.
TEST(UiRoutesTest, UnknownAssetIsNotFound) {
  for (const char* target : {"/ui/nope.js", "/ui/../CMakeLists.txt", "/ui//index.html",
                             "/ui/index.html/", "/ui/%69ndex.html"}) {
    const Response res = ServeUi(Get(target));
    EXPECT_EQ(res.result(), bhttp::status::not_found) << target;
    const auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["error"]["code"], "NOT_FOUND") << target;
    EXPECT_EQ(Header(res, "X-Content-Type-Options"), "nosniff");
  }
}

// Verifies that the dashboard is read-only: anything but GET and HEAD is a 405 with Allow.
TEST(UiRoutesTest, RefusesOtherMethods) {
  for (bhttp::verb method : {bhttp::verb::post, bhttp::verb::put, bhttp::verb::delete_}) {
    const Response res = ServeUi(Get("/ui/", method));
    EXPECT_EQ(res.result(), bhttp::status::method_not_allowed);
    EXPECT_EQ(Header(res, "Allow"), "GET, HEAD");
  }
}

}  // namespace
}  // namespace sluice::http
