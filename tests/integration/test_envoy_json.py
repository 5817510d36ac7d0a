"""POST /json: envoyproxy/ratelimit's HTTP form of ShouldRateLimit (CONTRACT §3.2, §5
"Envoy-compatible"). A RateLimitRequest in proto3 JSON in, a RateLimitResponse out, 200 for OK and
429 for OVER_LIMIT. The gRPC suite (grpc_test.cc) covers the same matching through gRPC; this
file pins what is particular to the JSON form.
"""

import json
import unittest

from sluice_server import ServerTestCase, unique

DOMAIN = """
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: path
    value: "/api/*"
    rate_limit: {unit: hour, requests_per_unit: 100}
  - key: path
    value: /healthz
  - key: tenant
    descriptors:
      - key: plan
        value: gold
        rate_limit: {unit: minute, requests_per_unit: 1000, name: gold}
  - key: vip
    rate_limit: {unlimited: true}
  - key: trial
    rate_limit: {unit: hour, requests_per_unit: 1}
    shadow_mode: true
"""


def body(domain, *descriptors, hits_addend=None):
    request = {"domain": domain,
               "descriptors": [{"entries": [{"key": k, "value": v} for k, v in d]}
                               for d in descriptors]}
    if hits_addend is not None:
        request["hits_addend"] = hits_addend
    return json.dumps(request)


class EnvoyJsonTest(ServerTestCase):
    # The RateLimit-* headers and dynamic metadata are sent only when the server config asks.
    SERVER_FILES = {"edge.yaml": DOMAIN,
                    "sluice.yaml": "envoy: {response_headers: true, dynamic_metadata: true}\n"}
    SERVER_RULES = ["edge.yaml"]
    SERVER_CONFIG = "sluice.yaml"

    def post(self, payload):
        return self.server.request("POST", "/json", body=payload,
                                   headers={"Content-Type": "application/json"})

    def test_ok_then_over_limit_with_headers(self):
        ip = unique("10.0.0.")
        first = self.post(body("edge", [("remote_address", ip)]))
        self.assertEqual(first.status, 200)
        doc = first.json()
        self.assertEqual(doc["overallCode"], "OK")
        status = doc["statuses"][0]
        self.assertEqual(status["code"], "OK")
        self.assertEqual(status["currentLimit"], {"requestsPerUnit": 2, "unit": "HOUR"})
        self.assertEqual(status["limitRemaining"], 1)
        # Whole seconds, as upstream sends them: "1234s", never "1233.443432s".
        self.assertRegex(status["durationUntilReset"], r"^[1-9][0-9]*s$")
        self.assertEqual(doc["dynamicMetadata"]["domain"], "edge")
        self.assertEqual(doc["dynamicMetadata"]["descriptors"],
                         [{"entries": ["remote_address=" + ip]}])
        headers = {h["key"]: h["value"] for h in doc["responseHeadersToAdd"]}
        self.assertEqual(headers["RateLimit-Limit"], "2")
        self.assertEqual(headers["RateLimit-Remaining"], "1")
        self.assertEqual(first.header("RateLimit-Remaining"), "1")

        self.post(body("edge", [("remote_address", ip)]))
        over = self.post(body("edge", [("remote_address", ip)]))
        self.assertEqual(over.status, 429)
        self.assertEqual(over.json()["overallCode"], "OVER_LIMIT")
        self.assertEqual(over.json()["statuses"][0]["code"], "OVER_LIMIT")

    def test_snake_case_fields_are_accepted(self):
        ip = unique("10.1.0.")
        res = self.post(json.dumps({"domain": "edge", "hits_addend": 2, "descriptors": [
            {"entries": [{"key": "remote_address", "value": ip}]}]}))
        self.assertEqual(res.status, 200)
        self.assertEqual(res.json()["statuses"][0].get("limitRemaining", 0), 0)

    def test_statuses_in_request_order_and_over_limit_consumes_nothing(self):
        ip = unique("10.2.0.")
        self.post(body("edge", [("remote_address", ip)]))
        self.post(body("edge", [("remote_address", ip)]))  # the IP is now full
        path = unique("/api/")
        res = self.post(body("edge", [("path", path)], [("remote_address", ip)]))
        self.assertEqual(res.status, 429)
        codes = [s["code"] for s in res.json()["statuses"]]
        self.assertEqual(codes, ["OK", "OVER_LIMIT"])
        # The path descriptor was not charged by the refused request.
        again = self.post(body("edge", [("path", path)]))
        self.assertEqual(again.json()["statuses"][0]["limitRemaining"], 99)

    def test_whitelisted_unknown_and_unlimited(self):
        res = self.post(body("edge", [("path", "/healthz")], [("vip", "x")]))
        self.assertEqual(res.status, 200)
        whitelisted, unlimited = res.json()["statuses"]
        self.assertEqual(whitelisted["code"], "OK")
        self.assertNotIn("currentLimit", whitelisted)
        self.assertEqual(unlimited["limitRemaining"], 4294967295)
        unknown = self.post(body("nope", [("remote_address", "1.2.3.4")]))
        self.assertEqual(unknown.status, 200)
        self.assertNotIn("currentLimit", unknown.json()["statuses"][0])

    def test_nested_and_depth_mismatch(self):
        tenant = unique("t")
        nested = self.post(body("edge", [("tenant", tenant), ("plan", "gold")]))
        self.assertEqual(nested.json()["statuses"][0]["currentLimit"]["name"], "gold")
        shallow = self.post(body("edge", [("tenant", tenant)]))
        self.assertNotIn("currentLimit", shallow.json()["statuses"][0])

    def test_shadow_mode_never_over_limit(self):
        user = unique("u")
        for _ in range(3):
            res = self.post(body("edge", [("trial", user)]))
            self.assertEqual(res.status, 200)
            self.assertEqual(res.json()["statuses"][0]["code"], "OK")

    def test_bad_requests(self):
        for payload in ["", "{", "[]", '{"domain": 5}', '{"domain": "", "descriptors": []}',
                        '{"domain": "edge", "descriptors": []}',
                        '{"domain": "edge", "descriptors": [{"entries": []}]}']:
            with self.subTest(payload=payload):
                res = self.post(payload)
                self.assertError(res, 400, "INVALID_REQUEST")

    def test_wrong_method(self):
        res = self.server.request("GET", "/json")
        self.assertError(res, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(res.header("Allow"), "POST")



class EnvoyJsonDefaultsTest(ServerTestCase):
    """Without an `envoy:` section: no RateLimit-* headers and no dynamic metadata (upstream's
    defaults); `envoy: {shadow_mode: true}` is tested over gRPC (grpc_test.cc)."""
    SERVER_FILES = {"edge.yaml": DOMAIN}
    SERVER_RULES = ["edge.yaml"]

    def test_no_headers_unless_asked(self):
        ip = unique("10.9.0.")
        payload = body("edge", [("remote_address", ip)], hits_addend=3)
        over = self.server.request("POST", "/json", body=payload,
                                   headers={"Content-Type": "application/json"})
        self.assertEqual(over.status, 429)
        doc = over.json()
        self.assertNotIn("responseHeadersToAdd", doc)
        self.assertNotIn("dynamicMetadata", doc)
        self.assertIsNone(over.header("RateLimit-Remaining"))
        # OVER_LIMIT reports nothing remaining, with the reset in whole seconds.
        self.assertEqual(doc["statuses"][0].get("limitRemaining", 0), 0)
        self.assertRegex(doc["statuses"][0]["durationUntilReset"], r"^[1-9][0-9]*s$")


if __name__ == "__main__":
    unittest.main()
