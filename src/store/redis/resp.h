// RESP, Redis's wire format: commands written straight into a send buffer, replies read by
// hiredis's reader from bytes we feed it (the I/O is the connection's). No sockets here.
#pragma once

#include <hiredis/hiredis.h>

#include <charconv>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice::redis {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
// A parsed reply. A Redis error reply (REDIS_REPLY_ERROR) is a reply, not a failed Status.
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Appends `args` as one RESP command (an array of bulk strings) to `out`.
void AppendCommand(std::string& out, std::span<const std::string_view> args);

// Writes one RESP command argument by argument, without building the arguments first: the hot
// path's EVALSHA. Begin(n) then exactly n Arg calls.
class CommandWriter {
 public:
  explicit CommandWriter(std::string& out) : out_(out) {}
  void Begin(size_t argc) { Header('*', argc); }
  void Arg(std::string_view arg) {
    Header('$', arg.size());
    out_.append(arg).append("\r\n");
  }
  void Arg(int64_t value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof(digits), value).ptr;
    Arg(std::string_view(digits, static_cast<size_t>(end - digits)));
  }

 private:
  void Header(char kind, size_t n) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof(digits), n).ptr;
    out_.push_back(kind);
    out_.append(digits, static_cast<size_t>(end - digits)).append("\r\n");
  }
  std::string& out_;
};

// Replies out of a byte stream: Feed what the socket read, then take replies with Next until
// it has no complete one. Not thread-safe (one per connection).
class ReplyReader {
 public:
  // Elements of all the arrays of one reply, nested ones included. hiredis allocates an array's
  // element pointers when it reads the header, so "*111111111" alone would take 900 MB; no reply
  // Sluice asks for comes near this (CLUSTER SLOTS of a fully fragmented cluster with replicas
  // is under a million).
  static constexpr int64_t kMaxElementsPerReply = int64_t{4} << 20;

  explicit ReplyReader(int64_t max_elements_per_reply = kMaxElementsPerReply);
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // INTERNAL on a protocol error (the stream is then unusable).
  absl::Status Feed(const char* data, size_t n);
  // The next complete reply; a null Reply when the bytes fed so far hold no complete one.
  // INTERNAL on a protocol error.
  absl::StatusOr<Reply> Next();

 private:
  struct Free {
    void operator()(redisReader* r) const { redisReaderFree(r); }
  };
  static void* CreateArray(const redisReadTask* task, int elements);

  std::unique_ptr<redisReader, Free> reader_;
  redisReplyObjectFunctions functions_{};
  void* (*create_array_)(const redisReadTask*, int) = nullptr;
  const int64_t max_elements_;
  int64_t elements_left_;  // of the reply being read
};

}  // namespace sluice::redis
