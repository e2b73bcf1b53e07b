#include "attune/adapters/adapter.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::TinyBase;

TEST(LoraTarget, NamesRoundTrip) {
  for (int i = 0; i < kNumLoraTargets; ++i) {
    auto t = static_cast<LoraTarget>(i);
    auto parsed = ParseLoraTarget(LoraTargetName(t));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(ParseLoraTarget("qkv").status().code(), StatusCode::kInvalidArgument);
}

TEST(Adapter, ValidAdapterValidates) {
  Adapter a = MakeAdapter(1);
  EXPECT_TRUE(a.Validate().ok()) << a.Validate().ToString();
  EXPECT_EQ(a.ParameterCount(), 2u * (2 * 16 + 16 * 2 + 2 * 16 + 8 * 2));
}

TEST(Adapter, RejectsWrongShapeNamingTheTensor) {
  Adapter a = MakeAdapter(1);
  a.layers[1][static_cast<int>(LoraTarget::kV)].b.shape = {9, 2};
  Status s = a.Validate();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("layer 1 target v matrix b"), std::string::npos) << s.message();
}

TEST(Adapter, RejectsNonFiniteWeights) {
  Adapter a = MakeAdapter(1);
  a.layers[0][0].a.data[3] = std::nanf("");
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(Adapter, RejectsAScopeThatCannotBeRead) {
  auto scoped = [] {
    Adapter a = MakeAdapter(1);
    a.scope.layer = 1;
    a.scope.mean = {0, 0};
    a.scope.scale = {1, 1};
    a.scope.weight = {1, -1};
    return a;
  };
  EXPECT_TRUE(scoped().Validate().ok());
  Adapter a = scoped();
  a.scope.layer = a.n_layers + 1;
  Status s = a.Validate();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("scope layer"), std::string::npos) << s.message();
  a = scoped();
  a.scope.scale.pop_back();
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
  a = scoped();
  a.scope.bias = std::nan("");
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
  a = scoped();
  a.scope.weight.clear();  // means without weights
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(Adapter, RejectsPairForTargetNotListed) {
  Adapter a = MakeAdapter(1);
  a.targets = {LoraTarget::kQ};
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(Adapter, AllowsTargetAbsentInSomeLayers) {
  Adapter a = MakeAdapter(1);
  a.layers[0][static_cast<int>(LoraTarget::kV)] = LoraPair{};
  EXPECT_TRUE(a.Validate().ok());
}

TEST(Adapter, RejectsDuplicateTargetsAndBadRank) {
  Adapter a = MakeAdapter(1);
  a.targets.push_back(LoraTarget::kQ);
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
  Adapter b = MakeAdapter(1);
  b.rank = 0;
  EXPECT_EQ(b.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(Adapter, RejectsMalformedParentVersion) {
  Adapter a = MakeAdapter(1);
  a.parent_version = "../../etc/passwd";
  EXPECT_EQ(a.Validate().code(), StatusCode::kInvalidArgument);
  a.parent_version = std::string(64, 'f');
  EXPECT_TRUE(a.Validate().ok());
}

TEST(Adapter, CompatibleWithItsBaseModel) { EXPECT_TRUE(MakeAdapter(1).CheckCompatible(TinyBase()).ok()); }

TEST(Adapter, RejectsAdapterForOtherBaseModel) {
  Status s = MakeAdapter(1).CheckCompatible(TinyBase(std::string(64, 'b')));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("adapter was trained for base model aaaaaaaaaaaa (llama), this is bbbbbbbbbbbb (llama)"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("hint: maybe wrong base model?"), std::string::npos);
}

TEST(Adapter, RejectsOtherArchitecture) {
  BaseModelInfo base = TinyBase();
  base.arch = "qwen2";
  EXPECT_EQ(MakeAdapter(1).CheckCompatible(base).code(), StatusCode::kFailedPrecondition);
}

TEST(Adapter, CompatibilityNamesTheTensorWhoseDimsDiffer) {
  BaseModelInfo base = TinyBase();
  base.dims[static_cast<int>(LoraTarget::kV)] = {16, 4};
  Status s = MakeAdapter(1).CheckCompatible(base);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("layer 0 target v matrix a"), std::string::npos) << s.message();
}

TEST(Adapter, RejectsDifferentLayerCount) {
  BaseModelInfo base = TinyBase();
  base.n_layers = 3;
  EXPECT_EQ(MakeAdapter(1).CheckCompatible(base).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace attune::adapters
