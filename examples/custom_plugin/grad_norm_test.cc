// Tests of the grad_norm plugin with trainbus/testing.h: no trainer, no data,
// no files. A FakeRun drives the hooks; a tiny module holds the gradients.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include "grad_norm.h"
#include "trainbus/testing.h"

namespace {

using grad_norm::GradNormPlugin;
using trainbus::testing::CreatePlugin;
using trainbus::testing::FakeRun;
using ::testing::ElementsAre;

// A layer whose gradients are what a backward pass left: weight (3, 4), bias
// 0, so the global 2-norm is 5.
torch::nn::Linear LayerWithGradients() {
  torch::nn::Linear layer(2, 1);
  layer->weight.mutable_grad() = torch::tensor({{3.0f, 4.0f}});
  layer->bias.mutable_grad() = torch::zeros({1});
  return layer;
}

TEST(GradNormTest, PublishesTheNormEveryNthIterationAndStopsWhenItExplodes) {
  torch::nn::Linear layer = LayerWithGradients();
  auto plugin = CreatePlugin<GradNormPlugin>(R"({"every_n": 2, "max_norm": 4.5})");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  FakeRun run;
  run.Bind(layer.ptr().get(), nullptr);
  ASSERT_TRUE(run.Add(plugin->get(), "grad_norm").ok());
  trainbus::testing::FakeRunResult result = run.Run();

  EXPECT_EQ(result.reason, trainbus::EndReason::kStopRequested);
  EXPECT_EQ(result.last_step, 1);  // the 2nd iteration is the first measured
  EXPECT_EQ(result.stop_reason,
            "grad_norm: gradient norm 5 at step 1 (epoch 1) exceeds max_norm 4.5");
  EXPECT_THAT(run.recorder().Steps("grad_norm/global"), ElementsAre(1));
  EXPECT_THAT(run.recorder().Scalars("grad_norm/global"), ElementsAre(5.0));
  EXPECT_EQ(run.recorder().Steps("grad_norm/per_parameter").size(), 1u);
}

TEST(GradNormTest, BadOptionsAreNamed) {
  auto plugin = CreatePlugin<GradNormPlugin>(R"({"norm_type": "two"})");
  ASSERT_FALSE(plugin.ok());
  EXPECT_EQ(plugin.status().message(),
            "plugin 'grad_norm': option 'norm_type' must be a number > 0 or the string \"inf\"");
  plugin = CreatePlugin<GradNormPlugin>(R"({"max_nrom": 1})");
  ASSERT_FALSE(plugin.ok());
  EXPECT_THAT(std::string(plugin.status().message()), ::testing::HasSubstr("unknown option 'max_nrom'"));
}

TEST(GradNormTest, ItsCountersSurviveAResume) {
  torch::nn::Linear layer = LayerWithGradients();
  auto first = CreatePlugin<GradNormPlugin>();
  ASSERT_TRUE(first.ok());
  FakeRun run;  // 10 iterations, every one measured, no limit
  run.Bind(layer.ptr().get(), nullptr);
  ASSERT_TRUE(run.Add(first->get(), "grad_norm").ok());
  ASSERT_TRUE(run.Run().status.ok());
  absl::StatusOr<std::string> saved = (*first)->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();

  auto second = CreatePlugin<GradNormPlugin>();
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->LoadState(*saved).ok());
  EXPECT_EQ((*second)->measured(), 10);
  EXPECT_EQ((*second)->max_seen(), 5.0);
  EXPECT_FALSE((*second)->LoadState("measured=3").ok());  // not a PluginState
}

}  // namespace
