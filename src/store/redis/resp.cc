#include "store/redis/resp.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice::redis {

void AppendCommand(std::string& out, std::span<const std::string_view> args) {
  absl::StrAppend(&out, "*", args.size(), "\r\n");
  for (std::string_view arg : args) {
    absl::StrAppend(&out, "$", arg.size(), "\r\n");
    out.append(arg).append("\r\n");
  }
}

ReplyReader::ReplyReader(int64_t max_elements_per_reply)
    : reader_(redisReaderCreate()),
      max_elements_(max_elements_per_reply),
      elements_left_(max_elements_per_reply) {
  // hiredis's own reply builders, with the array one counted against the reply's budget.
  functions_ = *reader_->fn;
  create_array_ = functions_.createArray;
  functions_.createArray = &ReplyReader::CreateArray;
  reader_->fn = &functions_;
  reader_->privdata = this;
}

void* ReplyReader::CreateArray(const redisReadTask* task, int elements) {
  auto* self = static_cast<ReplyReader*>(task->privdata);
  self->elements_left_ -= std::max(elements, 0);
  if (self->elements_left_ < 0) return nullptr;  // hiredis turns this into a reader error
  return self->create_array_(task, elements);
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
    if (elements_left_ < 0) {
      return absl::InternalError(absl::StrCat("redis protocol error: a reply of more than ",
                                              max_elements_, " array elements"));
    }
    return absl::InternalError(absl::StrCat("redis protocol error: ", reader_->errstr));
  }
  if (raw != nullptr) elements_left_ = max_elements_;
  return Reply(static_cast<redisReply*>(raw));
}

}  // namespace sluice::redis
