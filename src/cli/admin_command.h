// `sluice admin`: the admin HTTP API (CONTRACT §8) from the command line, for people and
// scripts. Rules, allow/deny list entries, tiers, the audit log, versions and restores; and
// `rules apply -f FILE`, which makes the database's rules match a rules file (rules_diff.h).
//
// Exit codes: 0 done; 1 an API error (printed as "error: CODE: message" plus a line per
// detail), the server unreachable ("error: cannot reach URL: reason"), or a file that does not
// load; 2 bad usage (a one-line error and the usage, as every `sluice` command).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "CLI/CLI.hpp"

namespace sluice::cli {

class AdminCommand {
 public:
  // Adds `admin` and its sub-commands to `parent`, whose parse fills the flags here: `parent`
  // must outlive this.
  explicit AdminCommand(CLI::App& parent);
  AdminCommand(const AdminCommand&) = delete;
  AdminCommand& operator=(const AdminCommand&) = delete;

  CLI::App* app() const { return admin_; }

  // Runs the sub-command `parent`'s parse selected (app()->parsed() must be true); results go
  // to `out`, errors and warnings to `err`. Returns the exit code.
  int Run(std::ostream& out, std::ostream& err) const;

 private:
  struct Flags {
    std::string url;
    std::string token;
    bool json = false;
    std::string id;  // rules get/delete, lists delete
    std::string file;
    bool dry_run = false;
    std::string ip, user_id, api_key, reason, expires_at;  // lists add
    std::string tier_user, tier;
    uint64_t since = 0;
    uint64_t limit = 0;
    uint64_t version = 0;
  };
  // A list's sub-commands: `allow` / `deny`, and its list, add and delete.
  struct ListCommands {
    CLI::App* list_app = nullptr;
    CLI::App* list = nullptr;
    CLI::App* add = nullptr;
    CLI::App* remove = nullptr;
  };

  void AddRules(CLI::App& admin);
  void AddLists(CLI::App& admin);
  void AddTiers(CLI::App& admin);
  void AddHistory(CLI::App& admin);
  CLI::App* AddList(CLI::App& lists, const std::string& name, ListCommands& commands);

  Flags flags_;
  CLI::App* admin_ = nullptr;
  CLI::Option* since_ = nullptr;
  CLI::Option* limit_ = nullptr;
  CLI::App *rules_list_ = nullptr, *rules_get_ = nullptr, *rules_apply_ = nullptr,
           *rules_delete_ = nullptr;
  ListCommands allow_, deny_;
  CLI::App *tiers_get_ = nullptr, *tiers_set_ = nullptr, *tiers_delete_ = nullptr;
  CLI::App *audit_ = nullptr, *versions_ = nullptr, *restore_ = nullptr;
};

}  // namespace sluice::cli
