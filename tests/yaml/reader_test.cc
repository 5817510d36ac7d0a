// The YAML toolkit: positions, problems, field walking and typed getters.
#include "yaml/reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::yaml {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;

// Parses `text` and calls `fn` with the root and a Reader for "f.yaml"; returns the problems
// found, in position order.
std::vector<std::string> ProblemsOf(const std::string& text,
                                    const std::function<void(const YAML::Node&, Reader&)>& fn) {
  Problems problems("f.yaml");
  Reader reader(problems);
  Guard(problems, [&] { fn(YAML::Load(text), reader); });
  std::vector<std::string> out;
  problems.MoveTo(&out);
  return out;
}

// Calls `fn` on the field `name` of the root mapping.
std::vector<std::string> OnField(const std::string& text, std::string_view name,
                                 const std::function<void(const Field&, Reader&)>& fn) {
  return ProblemsOf(text, [&](const YAML::Node& root, Reader& r) {
    r.ForEachField(root, "test", [&](const Field& f) {
      if (f.name == name) fn(f, r);
      return true;
    });
  });
}

// Verifies positions from 1, and that an empty value is placed at its key, not at the next
// token, where yaml-cpp marks it.
TEST(YamlPosTest, ValuePositions) {
  const YAML::Node root = YAML::Load("a:\n  b: 1\n  c:\n  d: [x]\n");
  const YAML::Node a = root["a"];
  EXPECT_EQ(At(a), (Pos{2, 3}));
  for (const auto& kv : a) {
    const Field f{kv.first.Scalar(), kv.first, kv.second};
    if (f.name == "b") {
      EXPECT_EQ(f.value_pos(), (Pos{2, 6}));
    } else if (f.name == "c") {
      EXPECT_EQ(At(f.value), (Pos{4, 3}));  // yaml-cpp's mark: the next key
      EXPECT_EQ(f.value_pos(), (Pos{3, 3}));
    } else {
      EXPECT_EQ(f.value_pos(), (Pos{4, 6}));
    }
  }
  EXPECT_EQ(At(YAML::Node("built")), (Pos{1, 1}));
}

// Verifies that problems come out as FILE:LINE:COL in position order, equal positions in the
// order they were added.
TEST(YamlProblemsTest, SortedByPosition) {
  Problems p("dir/f.yaml");
  p.Add({3, 1}, "c");
  p.Add({1, 5}, "b");
  p.Add({1, 2}, "a1");
  p.Add({1, 2}, "a2");
  EXPECT_EQ(p.size(), 4u);
  std::vector<std::string> out = {"earlier"};
  p.MoveTo(&out);
  EXPECT_THAT(out, ElementsAre("earlier", "dir/f.yaml:1:2: a1", "dir/f.yaml:1:2: a2",
                               "dir/f.yaml:1:5: b", "dir/f.yaml:3:1: c"));
  EXPECT_TRUE(p.empty());
}

// Verifies the cap on kept problems: the first ones added are kept, the others counted; size()
// counts both, and MoveTo forgets both.
TEST(YamlProblemsTest, KeepsAtMostMaxKept) {
  Problems p("f.yaml", 2);
  p.Add({3, 1}, "c");
  p.Add({1, 1}, "a");
  p.Add({2, 1}, "b");
  p.Add({4, 1}, "d");
  EXPECT_EQ(p.size(), 4u);
  EXPECT_EQ(p.dropped(), 2u);
  std::vector<std::string> out;
  p.MoveTo(&out);
  EXPECT_THAT(out, ElementsAre("f.yaml:1:1: a", "f.yaml:3:1: c"));
  EXPECT_EQ(p.size(), 0u);
  EXPECT_EQ(p.dropped(), 0u);
}

// Verifies that a message quoting a huge input is cut, on a character boundary, with a marker
// giving its length.
TEST(YamlProblemsTest, LongMessagesAreCut) {
  Problems p("f.yaml");
  p.Add({1, 1}, "unknown key '" + std::string(100000, 'k') + "' in rule");
  std::vector<std::string> out;
  p.MoveTo(&out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LT(out[0].size(), 1100u);
  EXPECT_TRUE(out[0].ends_with("kkk\u2026 (100022 bytes)")) << out[0].substr(1000);
  // 3-byte characters: the cut never splits one.
  std::string dots;
  for (int i = 0; i < 1000; ++i) dots += "\u2026";
  const std::string cut = Truncate(dots, 1024);
  EXPECT_EQ(cut, dots.substr(0, 1023) + "\u2026 (3000 bytes)");
  EXPECT_EQ(Truncate("short", 1024), "short");
}

// Verifies that syntax errors and yaml-cpp exceptions become one problem at their mark.
TEST(YamlProblemsTest, GuardTurnsExceptionsIntoProblems) {
  EXPECT_THAT(ProblemsOf("a: [1\n", [](const YAML::Node&, Reader&) {}),
              ElementsAre("f.yaml:2:1: end of sequence flow not found"));
  EXPECT_THAT(
      ProblemsOf("a: 1\n", [](const YAML::Node& root, Reader&) { root["a"].as<std::string>(); }),
      IsEmpty());
  EXPECT_THAT(
      ProblemsOf("a: x\n", [](const YAML::Node& root, Reader&) { (void)root["a"].as<int>(); }),
      ElementsAre("f.yaml:1:4: bad conversion"));
}

TEST(YamlReadFileTest, ReadsOrSaysWhy) {
  std::string contents, error;
  EXPECT_FALSE(ReadFile("/nonexistent/f.yaml", &contents, &error));
  EXPECT_EQ(error, "No such file or directory");
  EXPECT_FALSE(ReadFile("/", &contents, &error));
  EXPECT_EQ(error, "Is a directory");
}

// Verifies unknown keys (with and without the known list), duplicate keys and non-string keys,
// each at the key.
TEST(YamlFieldsTest, UnknownDuplicateAndNonStringKeys) {
  EXPECT_THAT(
      ProblemsOf("a: 1\nb: 2\na: 3\n[x]: 4\n",
                 [](const YAML::Node& root, Reader& r) {
                   r.ForEachField(root, "rule", [](const Field& f) { return f.name == "a"; });
                 }),
      ElementsAre("f.yaml:2:1: unknown key 'b' in rule", "f.yaml:3:1: duplicate key 'a' in rule",
                  "f.yaml:4:1: keys of rule must be strings"));
  int calls = 0;
  EXPECT_THAT(ProblemsOf("listen:\n  http: x\n  htp: y\n",
                         [&](const YAML::Node& root, Reader& r) {
                           r.Fields(root, "'config'",
                                    {{"listen", [&](const Field& f) {
                                        r.Section(f, {{"http", [&](const Field&) { ++calls; }},
                                                      {"grpc", [&](const Field&) { ++calls; }}});
                                      }}});
                         }),
              ElementsAre("f.yaml:3:3: unknown key 'htp' in 'listen' (known: http, grpc)"));
  EXPECT_EQ(calls, 1);
}

// Verifies sections: empty is fine (defaults), anything but a mapping is a problem.
TEST(YamlFieldsTest, Sections) {
  auto section = [](const YAML::Node& root, Reader& r) {
    r.Fields(root, "'config'", {{"log", [&](const Field& f) {
                                   r.Section(f, {{"level", [](const Field&) {}}});
                                 }}});
  };
  EXPECT_THAT(ProblemsOf("log:\n", section), IsEmpty());
  EXPECT_THAT(ProblemsOf("log: [1]\n", section),
              ElementsAre("f.yaml:1:6: 'log' must be a mapping"));
  EXPECT_THAT(ProblemsOf("log: {a: 1}\n", section),
              ElementsAre("f.yaml:1:7: unknown key 'a' in 'log' (known: level)"));
}

TEST(YamlGettersTest, String) {
  std::optional<std::string> got;
  auto get = [&](const Field& f, Reader& r) { got = r.String(f); };
  EXPECT_THAT(OnField("s: \"4\"\n", "s", get), IsEmpty());
  EXPECT_THAT(got, Optional(std::string("4")));
  EXPECT_THAT(OnField("s: [a]\n", "s", get), ElementsAre("f.yaml:1:4: 's' must be a string"));
  EXPECT_THAT(OnField("s:\nt: 1\n", "s", get), ElementsAre("f.yaml:1:1: 's' must be a string"));
}

// Verifies integers: plain scalars only, and the range messages.
TEST(YamlGettersTest, Integer) {
  std::optional<int64_t> got;
  auto pool = [&](const Field& f, Reader& r) { got = r.Integer(f, 1, 64); };
  EXPECT_THAT(OnField("pool: 8\n", "pool", pool), IsEmpty());
  EXPECT_THAT(got, Optional(8));
  EXPECT_THAT(OnField("pool: \"4\"\n", "pool", pool),
              ElementsAre("f.yaml:1:7: 'pool' must be an integer, got '4'"));
  EXPECT_THAT(OnField("pool: !!int 4\n", "pool", pool),
              ElementsAre("f.yaml:1:7: 'pool' must be an integer, got '4'"));
  EXPECT_THAT(OnField("pool: 0x10\n", "pool", pool),
              ElementsAre("f.yaml:1:7: 'pool' must be an integer, got '0x10'"));
  EXPECT_THAT(OnField("pool: 65\n", "pool", pool),
              ElementsAre("f.yaml:1:7: 'pool' must be between 1 and 64, got 65"));
  EXPECT_THAT(OnField("pool:\nx: 1\n", "pool", pool),
              ElementsAre("f.yaml:1:1: 'pool' must be an integer"));
  EXPECT_THAT(OnField("n: 0\n", "n", [](const Field& f, Reader& r) { r.Integer(f, 1); }),
              ElementsAre("f.yaml:1:4: 'n' must be at least 1, got 0"));
  EXPECT_THAT(OnField("n: -9223372036854775808\n", "n",
                      [&](const Field& f, Reader& r) { got = r.Integer(f); }),
              IsEmpty());
  EXPECT_THAT(got, Optional(std::numeric_limits<int64_t>::min()));
}

TEST(YamlGettersTest, Bool) {
  std::optional<bool> got;
  auto get = [&](const Field& f, Reader& r) { got = r.Bool(f); };
  EXPECT_THAT(OnField("b: yes\n", "b", get), IsEmpty());
  EXPECT_THAT(got, Optional(true));
  EXPECT_THAT(OnField("b: \"true\"\n", "b", get),
              ElementsAre("f.yaml:1:4: 'b' must be true or false"));
  EXPECT_THAT(OnField("b: maybe\n", "b", get),
              ElementsAre("f.yaml:1:4: 'b' must be true or false"));
}

TEST(YamlGettersTest, Duration) {
  std::optional<int64_t> got;
  auto get = [&](const Field& f, Reader& r) { got = r.Duration(f, 3'600'000'000, "1 hour"); };
  EXPECT_THAT(OnField("t: 50ms\n", "t", get), IsEmpty());
  EXPECT_THAT(got, Optional(50'000));
  EXPECT_THAT(OnField("t: 0s\n", "t", get),
              ElementsAre("f.yaml:1:4: 't' must be longer than zero"));
  EXPECT_THAT(OnField("t: 2h\n", "t", get), ElementsAre("f.yaml:1:4: 't' must be at most 1 hour"));
  EXPECT_THAT(OnField("t: 50 ms\n", "t", get),
              ElementsAre("f.yaml:1:4: 't': invalid duration '50 ms': expected an integer and a "
                          "unit (ms, s, m, h, d, w), e.g. 500ms or 1h"));
  EXPECT_THAT(OnField("t:\nu: 1\n", "t", get),
              ElementsAre("f.yaml:1:1: 't' must be a duration: an integer and a unit (ms, s, m, "
                          "h, d, w), e.g. 500ms or 1h"));
}

// Verifies string lists: empty means none, each bad item reported at itself.
TEST(YamlGettersTest, StringList) {
  std::optional<std::vector<std::string>> got;
  auto get = [&](const Field& f, Reader& r) { got = r.StringList(f); };
  EXPECT_THAT(OnField("l: [a, \"b\"]\n", "l", get), IsEmpty());
  EXPECT_THAT(got, Optional(ElementsAre("a", "b")));
  EXPECT_THAT(OnField("l:\n", "l", get), IsEmpty());
  EXPECT_THAT(got, Optional(IsEmpty()));
  EXPECT_THAT(OnField("l: a\n", "l", get),
              ElementsAre("f.yaml:1:4: 'l' must be a list of strings"));
  EXPECT_THAT(OnField("l: [a, [b], {c: d}]\n", "l", get),
              ElementsAre("f.yaml:1:8: 'l' must be a list of strings",
                          "f.yaml:1:13: 'l' must be a list of strings"));
  EXPECT_EQ(got, std::nullopt);
}

// Verifies one-of values: the default message lists the choices; a caller may word its own.
TEST(YamlGettersTest, OneOfAndEnum) {
  enum class Color { kRed, kBlue };
  std::optional<Color> got;
  auto get = [&](const Field& f, Reader& r) {
    got = r.Enum<Color>(f, {{"red", Color::kRed}, {"blue", Color::kBlue}});
  };
  EXPECT_THAT(OnField("c: blue\n", "c", get), IsEmpty());
  EXPECT_EQ(got, Color::kBlue);
  EXPECT_THAT(OnField("c: green\n", "c", get),
              ElementsAre("f.yaml:1:4: 'c' must be one of red, blue, got 'green'"));
  EXPECT_THAT(OnField("c: [red]\n", "c", get), ElementsAre("f.yaml:1:4: 'c' must be a string"));
  constexpr std::string_view kModes[] = {"enforce", "shadow"};
  EXPECT_THAT(OnField("mode: loud\n", "mode",
                      [&](const Field& f, Reader& r) {
                        r.OneOf(f, kModes, [](std::string_view got) {
                          return "unknown mode '" + std::string(got) + "'";
                        });
                      }),
              ElementsAre("f.yaml:1:7: unknown mode 'loud'"));
}

TEST(YamlGettersTest, ExpectMappingAndSequence) {
  EXPECT_THAT(
      OnField("m: 1\n", "m", [](const Field& f, Reader& r) { r.ExpectMapping(f, "of a to b"); }),
      ElementsAre("f.yaml:1:4: 'm' must be a mapping of a to b"));
  EXPECT_THAT(OnField("m:\nx: 1\n", "m", [](const Field& f, Reader& r) { r.ExpectMapping(f); }),
              ElementsAre("f.yaml:1:1: 'm' must be a mapping"));
  EXPECT_THAT(OnField("s:\n", "s", [](const Field& f, Reader& r) { r.ExpectSequence(f, "x"); }),
              IsEmpty());
  EXPECT_THAT(
      OnField("s: {a: 1}\n", "s", [](const Field& f, Reader& r) { r.ExpectSequence(f, "rules"); }),
      ElementsAre("f.yaml:1:4: 's' must be a list of rules"));
}

}  // namespace
}  // namespace sluice::yaml
