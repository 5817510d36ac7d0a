#include "yaml/parse.h"

#include <sys/stat.h>
#include <yaml-cpp/anchor.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <istream>
#include <streambuf>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "base/strings.h"
#include "yaml/values.h"

namespace sluice::yaml {

using ::sluice::Cat;

namespace {

// A read-only stream over `text`, without copying it: yaml-cpp reads from a std::istream.
class ViewBuffer : public std::streambuf {
 public:
  explicit ViewBuffer(std::string_view text) {
    // streambuf wants char*; there is no put area, so nothing writes through it.
    char* begin = const_cast<char*>(text.data());
    setg(begin, begin, begin + text.size());
  }
};

// Thrown by LimitChecker through yaml-cpp's parser, to stop it at the first node past a limit.
struct Stop {
  Pos pos;
  std::string message;
};

// Counts the nodes of yaml-cpp's parse events as the node tree would hold them once expanded:
// each alias as the nodes of its anchor's node, and as deep as that node nests.
class LimitChecker final : public YAML::EventHandler {
 public:
  LimitChecker(const Limits& limits, size_t text_bytes, Problems& problems)
      : limits_(limits), max_events_(4 * text_bytes + 64), problems_(problems) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    Event(mark);
    // Anchors belong to their document; the node count is for the whole file.
    anchors_.clear();
    open_.clear();
    pending_name_.clear();
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { Leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    if (!IsValidUtf8(value)) {
      problems_.Add(At(mark), "invalid UTF-8 in a string (a YAML file must be UTF-8)");
    }
    Leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Event(mark);
    // yaml-cpp refuses an unknown anchor before calling here; the guard is for safety only.
    if (anchor >= anchors_.size()) return Count(1, mark);
    const Anchor& a = anchors_[anchor];
    if (a.open) {
      // yaml-cpp would make the node contain itself: a cycle that every walk follows for ever.
      throw Stop{At(mark), Cat("alias '*", a.name,
                               "' is used inside its own anchor's node: it would expand for ever")};
    }
    Count(a.nodes, mark);
    if (a.height == 0) return;
    if (static_cast<int>(open_.size()) + a.height > limits_.max_depth) {
      throw Stop{At(mark), Cat("nesting deeper than ", limits_.max_depth, " levels")};
    }
    if (!open_.empty()) open_.back().height = std::max(open_.back().height, a.height + 1);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

  // Called just before the event of the node that carries the anchor.
  void OnAnchor(const YAML::Mark&, const std::string& name) override { pending_name_ = name; }

 private:
  struct Anchor {
    std::string name;
    size_t nodes = 0;   // the anchored node's expanded size, itself included
    int height = 0;     // levels of sequences and mappings it holds: 0 for a scalar
    bool open = false;  // its node has started and not ended
  };
  struct OpenNode {
    YAML::anchor_t anchor;
    size_t nodes_before;  // nodes_ before this node was counted
    int height = 1;
  };

  // Every document, node and alias takes at least a byte of text, give or take a few (an empty
  // document, an implicit null): yaml-cpp 0.7 can loop on some malformed texts, reporting
  // empty documents for ever from 7 bytes ("'\n'('\n,", found by fuzzing). Far more events
  // than bytes is that loop: stopped there rather than at the node limit, a million events on.
  void Event(const YAML::Mark& mark) {
    if (++events_ > max_events_) {
      throw Stop{At(mark), Cat("the YAML parser went wrong on this text (", events_, " nodes from ",
                               max_events_ / 4 - 16, " bytes); check its syntax")};
    }
  }

  void Count(size_t n, const YAML::Mark& mark) {
    nodes_ += n;  // both at most max_nodes: no overflow
    if (nodes_ > limits_.max_nodes) {
      throw Stop{At(mark), Cat("more than ", limits_.max_nodes,
                               " nodes once aliases are expanded (the limit per file)")};
    }
  }

  // yaml-cpp numbers a document's anchors 1, 2, ... in the order they appear.
  Anchor& Define(YAML::anchor_t anchor) {
    if (anchors_.size() <= anchor) anchors_.resize(anchor + 1);
    anchors_[anchor] = Anchor{.name = std::exchange(pending_name_, {})};
    return anchors_[anchor];
  }

  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Event(mark);
    Count(1, mark);
    if (anchor != YAML::NullAnchor) Define(anchor).nodes = 1;
  }

  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Event(mark);
    Count(1, mark);
    if (static_cast<int>(open_.size()) + 1 > limits_.max_depth) {
      throw Stop{At(mark), Cat("nesting deeper than ", limits_.max_depth, " levels")};
    }
    if (anchor != YAML::NullAnchor) Define(anchor).open = true;
    open_.push_back({anchor, nodes_ - 1});
  }

  void Close() {
    const OpenNode node = open_.back();
    open_.pop_back();
    if (node.anchor != YAML::NullAnchor) {
      Anchor& a = anchors_[node.anchor];
      a.nodes = nodes_ - node.nodes_before;
      a.height = node.height;
      a.open = false;
    }
    if (!open_.empty()) open_.back().height = std::max(open_.back().height, node.height + 1);
  }

  const Limits& limits_;
  const size_t max_events_;  // documents, nodes and aliases, each counted once
  Problems& problems_;
  size_t events_ = 0;
  size_t nodes_ = 0;
  std::vector<Anchor> anchors_;  // by anchor id
  std::vector<OpenNode> open_;   // the sequences and mappings being read, outermost first
  std::string pending_name_;
};

}  // namespace

absl::StatusOr<std::string> ReadFileAtMost(const std::string& path, size_t max_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::UnavailableError(Cat("cannot read: ", std::generic_category().message(errno)));
  }
  struct stat st {};
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) > max_bytes) {
    std::fclose(f);
    return absl::FailedPreconditionError(
        Cat("too large (", static_cast<uint64_t>(st.st_size), " bytes, at most ", max_bytes, ")"));
  }
  std::string contents;
  char buf[1 << 14];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    contents.append(buf, n);
    if (contents.size() > max_bytes) {
      std::fclose(f);
      return absl::FailedPreconditionError(Cat("too large (more than ", max_bytes, " bytes)"));
    }
  }
  const bool failed = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (failed) {
    return absl::UnavailableError(
        Cat("cannot read: ", std::generic_category().message(read_errno)));
  }
  return contents;
}

std::optional<std::vector<YAML::Node>> Parse(std::string_view text, const Limits& limits,
                                             Problems& problems) {
  const size_t before = problems.size();
  // First pass: the events only, no node tree. Syntax errors surface here, as they would
  // while building the tree (same parser, same messages).
  Guard(problems, [&] {
    ViewBuffer buffer(text);
    std::istream in(&buffer);
    YAML::Parser parser(in);
    LimitChecker checker(limits, text.size(), problems);
    try {
      while (parser.HandleNextDocument(checker)) {
      }
    } catch (const Stop& stop) {
      problems.Add(stop.pos, stop.message);
    } catch (const YAML::DeepRecursion& e) {
      // yaml-cpp's own limit, which it calls "bad file": met only when `max_depth` is above
      // it. Its depth counts scalars as a level too.
      problems.Add(At(e.mark), Cat("nesting deeper than ",
                                   std::min(limits.max_depth, e.depth() - 1), " levels"));
    }
  });
  if (problems.size() != before) return std::nullopt;
  std::vector<YAML::Node> docs;
  const bool built = Guard(problems, [&] {
    ViewBuffer buffer(text);
    std::istream in(&buffer);
    docs = YAML::LoadAll(in);
  });
  if (!built) return std::nullopt;
  return docs;
}

}  // namespace sluice::yaml
