// BatchPrefetcher on its own: which requests it serves, a gather that
// fails on its thread, Stop(). Built from its source file alone (no trainer
// library), so that the ThreadSanitizer run builds and runs it in seconds
// (tools/sanitizers/run.sh tsan). The trainer's use of it, the same losses
// with it on and off, is tested in trainer_test.
#include <cstdint>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ATen/ATen.h>

#include "trainbus/data/batch_prefetcher.h"

namespace trainbus {
namespace {

using ::testing::HasSubstr;

// Rows 0..9 of a [10, 4] dataset: row i holds 4i..4i+3, its target 10i.
struct TinyRows {
  at::Tensor inputs = at::arange(40, at::kFloat).view({10, 4});
  at::Tensor targets = at::arange(10, at::kLong) * 10;
  at::Tensor order = at::tensor(std::vector<int64_t>{3, 7, 0, 9, 1, 4, 8, 2, 6, 5});
};

void ExpectBatch(const BatchPrefetcher::Batch& b, const at::Tensor& order, int64_t lo, int64_t hi) {
  const TinyRows rows;
  const at::Tensor picked = order.slice(0, lo, hi);
  ASSERT_TRUE(b.inputs.defined() && b.targets.defined());
  EXPECT_TRUE(b.inputs.equal(rows.inputs.index_select(0, picked))) << "rows " << lo << ".." << hi;
  EXPECT_TRUE(b.targets.equal(rows.targets.index_select(0, picked))) << "rows " << lo << ".." << hi;
}

TEST(BatchPrefetcherTest, ServesAPrefetchedBatchOnlyForTheRowsAskedFor) {
  TinyRows d;
  BatchPrefetcher p(d.inputs, d.targets);
  p.Prefetch(0, d.order, 2, 5);
  ExpectBatch(p.Take(0, d.order, 2, 5), d.order, 2, 5);
  EXPECT_EQ(p.prefetched(), 1);
  // Other rows, another key, another order under the same key: gathered now.
  p.Prefetch(0, d.order, 5, 8);
  ExpectBatch(p.Take(0, d.order, 5, 7), d.order, 5, 7);
  p.Prefetch(1, d.order, 0, 3);
  ExpectBatch(p.Take(2, d.order, 0, 3), d.order, 0, 3);
  const at::Tensor reversed = d.order.flip(0);
  p.Prefetch(3, d.order, 0, 3);
  ExpectBatch(p.Take(3, reversed, 0, 3), reversed, 0, 3);
  EXPECT_EQ(p.prefetched(), 1);
  // A second request replaces the first; nothing requested: gathered now.
  p.Prefetch(0, d.order, 0, 2);
  p.Prefetch(0, d.order, 2, 4);
  ExpectBatch(p.Take(0, d.order, 2, 4), d.order, 2, 4);
  ExpectBatch(p.Take(0, d.order, 0, 2), d.order, 0, 2);
  EXPECT_EQ(p.prefetched(), 2);
  ExpectBatch(p.Gather(d.order, 8, 10), d.order, 8, 10);
}

TEST(BatchPrefetcherTest, AGatherThatFailedInTheBackgroundThrowsOnTheCaller) {
  TinyRows d;
  BatchPrefetcher p(d.inputs, d.targets);
  const at::Tensor bad = at::tensor(std::vector<int64_t>{1, 99, 2});
  p.Prefetch(0, bad, 0, 3);
  try {
    p.Take(0, bad, 0, 3);
    ADD_FAILURE() << "a batch with row 99 of 10 was returned";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("out of range"));
  }
  EXPECT_EQ(p.prefetched(), 0);
  p.Prefetch(1, d.order, 0, 3);  // the thread goes on
  ExpectBatch(p.Take(1, d.order, 0, 3), d.order, 0, 3);
  EXPECT_EQ(p.prefetched(), 1);
}

TEST(BatchPrefetcherTest, StopDropsTheRequestAndPrefetchStartsTheThreadAgain) {
  TinyRows d;
  BatchPrefetcher p(d.inputs, d.targets);
  p.Prefetch(0, d.order, 0, 4);
  p.Stop();
  p.Stop();  // a second Stop() is a no-op
  ExpectBatch(p.Take(0, d.order, 0, 4), d.order, 0, 4);
  EXPECT_EQ(p.prefetched(), 0);
  p.Prefetch(0, d.order, 4, 8);
  ExpectBatch(p.Take(0, d.order, 4, 8), d.order, 4, 8);
  EXPECT_EQ(p.prefetched(), 1);
  p.Prefetch(0, d.order, 8, 10);  // left untaken: the destructor stops the thread
}

// The prefetch thread copies rows itself where it can (a contiguous CPU
// tensor) and leaves the rest to index_select: the bytes are the same.
TEST(BatchPrefetcherTest, EveryLayoutGivesWhatIndexSelectGives) {
  TinyRows d;
  const at::Tensor strided = at::arange(40, at::kDouble).view({4, 10}).t();  // [10, 4], not contiguous
  const at::Tensor images = at::arange(10 * 2 * 3 * 3, at::kFloat).view({10, 2, 3, 3});
  const at::Tensor flags = at::arange(10, at::kInt).remainder(2).to(at::kBool);
  for (const at::Tensor& inputs : {strided, images}) {
    BatchPrefetcher p(inputs, flags);
    for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, 10}, {3, 4}, {6, 6}}) {
      p.Prefetch(0, d.order, lo, hi);
      const BatchPrefetcher::Batch b = p.Take(0, d.order, lo, hi);
      const at::Tensor rows = d.order.slice(0, lo, hi);
      EXPECT_TRUE(b.inputs.equal(inputs.index_select(0, rows))) << lo << ".." << hi;
      EXPECT_TRUE(b.targets.equal(flags.index_select(0, rows))) << lo << ".." << hi;
      EXPECT_TRUE(b.inputs.is_contiguous());
      EXPECT_EQ(b.inputs.sizes()[0], hi - lo);
    }
    EXPECT_EQ(p.prefetched(), 3);
  }
}

// Hand-offs back to back, some taken as asked and some not, while the
// thread may still be gathering: every batch holds its own rows (under
// ThreadSanitizer, also no race between the two threads).
TEST(BatchPrefetcherTest, ManyHandOffsTakenOrDroppedEachGiveTheirRows) {
  TinyRows d;
  BatchPrefetcher p(d.inputs, d.targets);
  int64_t asked = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t key = i % 3, lo = i % 8, hi = lo + 2;
    p.Prefetch(key, d.order, lo, hi);
    if (i % 5 == 0) {
      ExpectBatch(p.Take(key, d.order, lo, hi + 1), d.order, lo, hi + 1);
    } else {
      ExpectBatch(p.Take(key, d.order, lo, hi), d.order, lo, hi);
      ++asked;
    }
  }
  EXPECT_EQ(p.prefetched(), asked);
}

}  // namespace
}  // namespace trainbus
