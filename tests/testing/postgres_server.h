// A PostgreSQL server that a test starts itself: initdb into a temporary folder, `postgres` on a
// free loopback port (its socket in that folder too), stopped and removed at the end. Run as
// the `postgres` system user when the test runs as root (PostgreSQL refuses to run as root).
// Durability is off (fsync, synchronous_commit): these databases live for one test run.
#pragma once

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/store/redis_server.h"  // FreePort

namespace sluice::testing {

class PostgresServer {
 public:
  PostgresServer() {
    bin_ = FindBinDir();
    char tmpl[] = "/tmp/sluice-pg-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    if (getuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr) throw std::runtime_error("running as root and no 'postgres' user");
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (chown(dir_.c_str(), uid_, gid_) != 0) throw std::runtime_error("chown failed");
    }
    if (Run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "sluice", "--auth=trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"}) != 0) {
      throw std::runtime_error("initdb failed");
    }
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreePort();
      if (Start()) return;
    }
    throw std::runtime_error("could not start postgres");
  }
  ~PostgresServer() {
    Stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& database = "postgres") const {
    return "postgresql://sluice@127.0.0.1:" + std::to_string(port_) + "/" + database;
  }

  // Creates a database (a fresh one per test keeps tests apart); throws on failure.
  void CreateDatabase(const std::string& name) {
    PGconn* c = PQconnectdb(url().c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      PQfinish(c);
      throw std::runtime_error("cannot connect to the test postgres");
    }
    PGresult* r = PQexec(c, ("CREATE DATABASE \"" + name + "\"").c_str());
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    if (!ok) throw std::runtime_error("CREATE DATABASE " + name + " failed");
  }

  // Starts it (again) on the same port and data; false if it did not come up.
  bool Start() {
    pid_ = Spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_), "-k", dir_,
                  "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                  "synchronous_commit=off", "-c", "full_page_writes=off", "-c",
                  "max_connections=200"});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (PQping(url().c_str()) == PQPING_OK) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Stop();
    return false;
  }
  // Fast shutdown (SIGINT): connections are cut, as when a database goes down.
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGINT);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  static std::string FindBinDir() {
    std::string best;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
      const std::string bin = entry.path().string() + "/bin";
      if (std::filesystem::exists(bin + "/initdb") && bin > best) best = bin;
    }
    if (best.empty()) throw std::runtime_error("PostgreSQL is not installed");
    return best;
  }

  pid_t Spawn(std::vector<std::string> args) const {
    const pid_t pid = fork();
    if (pid == 0) {
      if (getuid() == 0 && (setgid(gid_) != 0 || setuid(uid_) != 0)) _exit(126);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const std::string log = dir_ + "/postgres.log";
      freopen("/dev/null", "w", stdout);
      freopen(log.c_str(), "a", stderr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  int Run(std::vector<std::string> args) const {
    const pid_t pid = Spawn(std::move(args));
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string bin_;
  std::string dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sluice::testing
