// How `sluice admin` shows the admin API's answers (CONTRACT §8) to a person: tables, field
// lines and error lines. Pure functions of the JSON the API returned (`--json` prints that JSON
// as it came instead). Text from the server is printed with control characters replaced by '?',
// so a rule's description cannot drive the terminal.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sluice::cli {

// An error answer as lines, each ending in '\n': "error: CODE: message" then "  FIELD: message"
// per entry of `details` ("  message" for a detail without a field). A body that is not the
// API's error object gives "error: HTTP STATUS REASON" and, when the body is not empty, its
// first line (at most 200 bytes) after ": ".
std::string FormatApiError(int status, std::string_view reason, std::string_view body);

// Rows as aligned columns (two spaces apart, no trailing blanks), the first row the header.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows);

// GET /v1/admin/rules: ID LIMIT WINDOW ALGORITHM GROUP PRIORITY MODE SOURCE (§3.1's defaults
// where a rule leaves a field out; MODE "disabled" for a disabled rule), then "N rules,
// version V". InvalidArgument when `listing` is not {"rules": [...]}.
absl::StatusOr<std::string> RenderRules(const nlohmann::json& listing);

// One rule as "field: value" lines: id, source, revision first, then the others by name;
// strings as they are, other values as JSON.
absl::StatusOr<std::string> RenderRule(const nlohmann::json& rule);

// GET /v1/admin/lists/{allow|deny}: ID MATCH REASON EXPIRES SOURCE, MATCH the entry's
// attributes as "name=value" joined by spaces.
absl::StatusOr<std::string> RenderListEntries(const nlohmann::json& body);

// GET /v1/admin/audit: VERSION AT ACTOR ACTION TARGET (before and after only in --json).
absl::StatusOr<std::string> RenderAudit(const nlohmann::json& body);

// GET /v1/admin/versions: VERSION AT ACTOR SUMMARY.
absl::StatusOr<std::string> RenderVersions(const nlohmann::json& body);

// A JSON value as a table cell: strings as they are, null, absent and "" as "-", anything else
// as JSON; control characters replaced by '?'.
std::string Cell(const nlohmann::json& value);
std::string Printable(std::string_view text);

}  // namespace sluice::cli
