// Redis replies as the client reads them (store/redis/resp.h): bytes fed to the reply reader in
// the pieces a socket might deliver (the first byte picks the piece size), every complete reply
// taken, until a protocol error or the end. Whatever the bytes, replies or an error, never a
// crash. Each error reply's text is also read as a MOVED/ASK redirection's address and a node
// address (store/redis/url.h), as the cluster client reads them.
#include "fuzz/fuzz_support.h"
#include "store/redis/resp.h"
#include "store/redis/url.h"

namespace {

// Walks a reply as the store does (types, elements, strings), checking what hiredis promises.
void Walk(const redisReply& r, std::string_view input, int depth = 0) {
  if (depth > 64) return;
  switch (r.type) {
    case REDIS_REPLY_ARRAY:
      if (r.elements > 0 && r.element == nullptr)
        sluice::fuzz::Fail("array without elements", input);
      for (size_t i = 0; i < r.elements; ++i) Walk(*r.element[i], input, depth + 1);
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR: {
      const std::string_view text(r.str, r.len);
      if (r.type == REDIS_REPLY_ERROR) {
        // "MOVED 3999 127.0.0.1:6381": the address after the slot.
        const size_t space = text.rfind(' ');
        (void)sluice::redis::ParseNodeAddress(text.substr(space == text.npos ? 0 : space + 1));
      }
      (void)sluice::redis::ParseUrl(text);
      break;
    }
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  const std::string_view input = fuzz::Text(data, size);
  if (input.empty()) return 0;
  const size_t piece = 1 + static_cast<uint8_t>(input[0]) % 64;
  const std::string_view bytes = input.substr(1);
  redis::ReplyReader reader;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    const std::string_view chunk = bytes.substr(at, piece);
    if (!reader.Feed(chunk.data(), chunk.size()).ok()) return 0;
    for (;;) {
      absl::StatusOr<redis::Reply> reply = reader.Next();
      if (!reply.ok()) return 0;  // a protocol error: the connection closes
      if (*reply == nullptr) break;
      Walk(**reply, input);
    }
  }
  return 0;
}
