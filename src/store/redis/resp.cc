#include "store/redis/resp.h"

#include "absl/strings/str_cat.h"

namespace sluice::redis {

void AppendCommand(std::string& out, std::span<const std::string_view> args) {
  absl::StrAppend(&out, "*", args.size(), "\r\n");
  for (std::string_view arg : args) {
    absl::StrAppend(&out, "$", arg.size(), "\r\n");
    out.append(arg).append("\r\n");
  }
}

absl::Status ReplyReader::Feed(const char* data, size_t n) {
  if (redisReaderFeed(reader_.get(), data, n) != REDIS_OK) {
    return absl::InternalError("redis protocol error");
  }
  return absl::OkStatus();
}

absl::StatusOr<Reply> ReplyReader::Next() {
  void* raw = nullptr;
  if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
    return absl::InternalError(absl::StrCat("redis protocol error: ", reader_->errstr));
  }
  return Reply(static_cast<redisReply*>(raw));
}

}  // namespace sluice::redis
