// Reading and parsing hostile YAML within limits: alias bombs, cycles, nesting, invalid UTF-8,
// oversized files.
#include "yaml/parse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

namespace sluice::yaml {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

struct Parsed {
  bool ok = false;
  size_t documents = 0;
  std::vector<std::string> problems;
};

Parsed ParseText(const std::string& text, const Limits& limits = {}) {
  Problems problems("f.yaml");
  Parsed out;
  std::optional<std::vector<YAML::Node>> docs = Parse(text, limits, problems);
  out.ok = docs.has_value();
  if (docs.has_value()) out.documents = docs->size();
  problems.MoveTo(&out.problems);
  return out;
}

// The "billion laughs" of issue 10: seven levels of ten aliases each, 10^7 scalars once
// expanded, from a few hundred bytes.
std::string BillionLaughs() {
  std::string text = "a: &a [x,x,x,x,x,x,x,x,x,x]\n";
  for (char level = 'b'; level <= 'g'; ++level) {
    const std::string prev(1, static_cast<char>(level - 1));
    text += std::string(1, level) + ": &" + level + " [";
    for (int i = 0; i < 10; ++i) text += (i == 0 ? "*" : ",*") + prev;
    text += "]\n";
  }
  return text;
}

// Verifies that an alias bomb is refused at the alias that crosses the node limit, quickly and
// before any node tree is walked.
TEST(YamlParseTest, AliasBombRefusedAtTheAliasCrossingTheLimit) {
  const auto start = std::chrono::steady_clock::now();
  const Parsed parsed = ParseText(BillionLaughs());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(parsed.ok);
  // Before f: 123463 nodes; each *e is 111111 more, so the 8th *e of line 6 crosses 10^6.
  EXPECT_THAT(parsed.problems,
              ElementsAre("f.yaml:6:29: more than 1000000 nodes once aliases are expanded (the "
                          "limit per file)"));
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

// Verifies that yaml-cpp looping on a malformed text (found by fuzzing: 7 bytes on which it
// reports empty documents for ever) is stopped after a few events per byte, not a million nodes
// on; and that the densest valid texts (a flow sequence of one-letter items, a stream of empty
// documents, a mapping of empty values) stay well within that.
TEST(YamlParseTest, AParserLoopIsStoppedByEventsPerByte) {
  const Parsed looping = ParseText("'\n'('\n,");
  EXPECT_FALSE(looping.ok);
  EXPECT_THAT(looping.problems, ElementsAre(HasSubstr("the YAML parser went wrong on this text")));

  std::string dense = "[a";
  for (int i = 0; i < 10000; ++i) dense += ",a";
  dense += "]\n";
  EXPECT_TRUE(ParseText(dense).ok);
  std::string documents;
  for (int i = 0; i < 1000; ++i) documents += "---\n";
  EXPECT_EQ(ParseText(documents).documents, 1000u);
  std::string empties = "{";
  for (int i = 0; i < 1000; ++i) empties += (i ? ",k" : "k") + std::to_string(i) + ":";
  EXPECT_TRUE(ParseText(empties + "}").ok);
}

// Verifies the count: every scalar, null, sequence and mapping (keys included), and each alias
// as the whole node it stands for.
TEST(YamlParseTest, CountsAliasesAsTheirExpansion) {
  // map, a, [1, 2] (3), b, *x (3): 9 nodes.
  const std::string text = "a: &x [1, 2]\nb: *x\n";
  EXPECT_TRUE(ParseText(text, {.max_nodes = 9}).ok);
  EXPECT_THAT(ParseText(text, {.max_nodes = 8}).problems,
              ElementsAre("f.yaml:2:4: more than 8 nodes once aliases are expanded (the limit "
                          "per file)"));
  // Without aliases, the node past the limit: c of [a, b, c] is the 4th node.
  EXPECT_THAT(ParseText("[a, b, c]\n", {.max_nodes = 3}).problems,
              ElementsAre("f.yaml:1:8: more than 3 nodes once aliases are expanded (the limit "
                          "per file)"));
  // Every document counts toward the file's total.
  EXPECT_FALSE(ParseText("[a, b]\n---\n[c, d]\n", {.max_nodes = 5}).ok);
  EXPECT_EQ(ParseText("[a, b]\n---\n[c, d]\n", {.max_nodes = 6}).documents, 2u);
}

// Verifies that an anchor used inside its own node, which yaml-cpp would build as a cycle, is
// refused rather than walked for ever.
TEST(YamlParseTest, AliasInsideItsOwnAnchorIsRefused) {
  EXPECT_THAT(ParseText("a: &loop [x, *loop]\n").problems,
              ElementsAre("f.yaml:1:14: alias '*loop' is used inside its own anchor's node: it "
                          "would expand for ever"));
  EXPECT_THAT(ParseText("d: &d\n  - key: k\n    descriptors: *d\n").problems,
              ElementsAre("f.yaml:3:18: alias '*d' is used inside its own anchor's node: it "
                          "would expand for ever"));
}

// Verifies nesting: at the sequence or mapping that goes one level too deep, in flow and block
// style, beyond yaml-cpp's own limit, and through aliases.
TEST(YamlParseTest, NestingDeeperThanTheLimit) {
  EXPECT_TRUE(ParseText(std::string(64, '[') + std::string(64, ']') + "\n").ok);
  EXPECT_THAT(ParseText(std::string(65, '[') + std::string(65, ']') + "\n").problems,
              ElementsAre("f.yaml:1:65: nesting deeper than 64 levels"));
  // 100000 levels: yaml-cpp alone would report "bad file" (or exhaust the stack). Never
  // closed, yaml-cpp reads each '[' as the key of a one-pair mapping inside the previous one:
  // two levels per '['.
  EXPECT_THAT(ParseText(std::string(100000, '[')).problems,
              ElementsAre("f.yaml:1:33: nesting deeper than 64 levels"));
  std::string block;
  for (int i = 0; i < 5; ++i) block += std::string(2 * i, ' ') + "k" + std::to_string(i) + ":\n";
  EXPECT_TRUE(ParseText(block + "          x: 1\n", {.max_depth = 6}).ok);
  EXPECT_THAT(ParseText(block + "          x: 1\n", {.max_depth = 5}).problems,
              ElementsAre("f.yaml:6:11: nesting deeper than 5 levels"));
  // a's node holds two levels; used three levels down, it reaches five.
  const std::string aliased = "a: &a [[x]]\nb: [[*a]]\n";
  EXPECT_TRUE(ParseText(aliased, {.max_depth = 5}).ok);
  EXPECT_THAT(ParseText(aliased, {.max_depth = 4}).problems,
              ElementsAre("f.yaml:2:6: nesting deeper than 4 levels"));
  // Above yaml-cpp's own limit, its exception is reported in the same words.
  const Parsed deep = ParseText(std::string(1000, '['), {.max_depth = 100000});
  ASSERT_THAT(deep.problems, SizeIs(1));
  EXPECT_THAT(deep.problems[0], ::testing::HasSubstr(": nesting deeper than 499 levels"));
}

// Verifies that every scalar must be UTF-8, keys included; the file is not interpreted then.
TEST(YamlParseTest, InvalidUtf8IsAProblemAtTheScalar) {
  EXPECT_THAT(ParseText("id: \"a\xff\"\n\xc0\xaf: 1\nok: \xc3\xa9t\xc3\xa9\n").problems,
              ElementsAre("f.yaml:1:5: invalid UTF-8 in a string (a YAML file must be UTF-8)",
                          "f.yaml:2:1: invalid UTF-8 in a string (a YAML file must be UTF-8)"));
  EXPECT_TRUE(ParseText("ok: \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\n").ok);
}

// Verifies that syntax errors keep yaml-cpp's words and mark, and that valid text parses.
TEST(YamlParseTest, SyntaxErrorsAndSuccess) {
  EXPECT_THAT(ParseText("a: [1\n").problems,
              ElementsAre("f.yaml:2:1: end of sequence flow not found"));
  EXPECT_THAT(ParseText("a: *nope\n").problems,
              ElementsAre(::testing::StartsWith("f.yaml:1:4: the referenced anchor is not "
                                                "defined")));
  const Parsed parsed = ParseText("a: 1\n");
  EXPECT_TRUE(parsed.ok);
  EXPECT_EQ(parsed.documents, 1u);
  EXPECT_THAT(parsed.problems, IsEmpty());
  EXPECT_EQ(ParseText("").documents, 0u);
}

TEST(YamlReadFileAtMostTest, RefusesLargeFilesAndSaysWhy) {
  const std::string path =
      ::testing::TempDir() + "/sluice_yaml_parse_test_" + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path) << std::string(100, 'x');
  absl::StatusOr<std::string> read = ReadFileAtMost(path, 100);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 100u);
  read = ReadFileAtMost(path, 99);
  EXPECT_EQ(read.status().message(), "too large (100 bytes, at most 99)");
  std::remove(path.c_str());
  // Not a regular file: refused once it has given more than the limit.
  read = ReadFileAtMost("/dev/zero", 1000);
  EXPECT_EQ(read.status().message(), "too large (more than 1000 bytes)");
  read = ReadFileAtMost("/nonexistent/f.yaml", 1000);
  EXPECT_EQ(read.status().message(), "cannot read: No such file or directory");
}

}  // namespace
}  // namespace sluice::yaml
