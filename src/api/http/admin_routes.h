// The admin API (CONTRACT §8): rules, allow/deny lists, tiers, counters, versions and the audit
// log under /v1/admin/, behind bearer tokens. Every call that reads or writes the rules
// database runs on one admin thread of its own, never on the threads that answer checks: a
// slow database slows the admin API, not the limiter.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "admin/managed_rules.h"
#include "admin/tokens.h"
#include "api/http/server.h"
#include "base/mutex.h"
#include "limiter/limiter.h"
#include "obs/metrics.h"

namespace sluice::http {

inline constexpr std::string_view kAdminPrefix = "/v1/admin/";

class AdminRoutes {
 public:
  // `managed` and `limiter` must outlive the AdminRoutes.
  AdminRoutes(admin::ManagedRules& managed, Limiter& limiter, admin::Tokens tokens,
              obs::Metrics& metrics);
  ~AdminRoutes();  // finishes the calls already queued, then stops the admin thread
  AdminRoutes(const AdminRoutes&) = delete;
  AdminRoutes& operator=(const AdminRoutes&) = delete;

  // Handles a request whose path starts with kAdminPrefix. Authorizes it on the calling thread
  // (no database involved), then queues it for the admin thread.
  void Handle(Request& request, Respond respond);

  // What a call needs of its request, copied: the request itself belongs to its connection.
  struct Call;

 private:
  void Run();
  void Serve(Call& call);

  admin::ManagedRules& managed_;
  Limiter& limiter_;
  const admin::Tokens tokens_;
  obs::Metrics& metrics_;

  Mutex mu_;
  CondVar cv_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sluice::http
