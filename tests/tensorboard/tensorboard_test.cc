// Tests of trainbus::tensorboard: checksums, framing, the hand encoder, every
// summary kind round-tripped through our reader, faults, concurrency, inspect.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainbus/record.h"
#include "trainbus/tensorboard/crc32c.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/event_file_writer.h"
#include "trainbus/tensorboard/histogram.h"
#include "trainbus/tensorboard/inspect.h"
#include "trainbus/tensorboard/owner_lane.h"
#include "trainbus/tensorboard/proto/event.pb.h"
#include "trainbus/tensorboard/proto/hparams.pb.h"
#include "trainbus/tensorboard/proto/plugins.pb.h"
#include "trainbus/tensorboard/record_framing.h"
#include "trainbus/tensorboard/rewind.h"
#include "trainbus/tensorboard/scalar_event.h"
#include "trainbus/tensorboard/summaries.h"
#include "trainbus/tensorboard/tensor_summaries.h"
#include "trainbus/tensorboard/summary_writer.h"
#include "tb_test_helpers.h"
#include "test_util.h"

namespace {

using trainbus::test_util::ReadFile;
using trainbus::test_util::TempDir;
using namespace trainbus::tb_test;  // EventFiles, ReadRun, MakeWriter, Values, DecodePng

namespace fs = std::filesystem;
namespace tb = trainbus::tensorboard;
using tb::proto::Event;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Bitwise reference CRC-32C, independent of the library.
uint32_t ReferenceCrc32c(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t ReferenceMask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

std::string LE(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// ---- CRC-32C --------------------------------------------------------------------

TEST(Crc32c, CheckValue) {
  const char* s = "123456789";
  EXPECT_EQ(tb::crc32c::Value(s, 9), 0xE3069283u);
  EXPECT_EQ(tb::crc32c::ValuePortable(s, 9), 0xE3069283u);
  if (tb::crc32c::HasHardwareSupport()) {
    EXPECT_EQ(tb::crc32c::ValueHardware(s, 9), 0xE3069283u);
  }
  EXPECT_EQ(tb::crc32c::Value("", 0), 0u);
}

TEST(Crc32c, MaskCheckValue) {
  const std::string data("\x1a\x11" "CRC test, one two", 19);
  ASSERT_EQ(data.size(), 19u);
  EXPECT_EQ(tb::crc32c::Mask(tb::crc32c::Value(data.data(), data.size())), 0x5794d08au);
  for (uint32_t v : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x12345678u}) {
    EXPECT_EQ(tb::crc32c::Unmask(tb::crc32c::Mask(v)), v);
    EXPECT_EQ(tb::crc32c::Mask(v), ReferenceMask(v));
  }
}

TEST(Crc32c, HardwareEqualsPortableAllLengthsAndAlignments) {
  std::mt19937 rng(1234);
  std::vector<uint8_t> buf(300 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t len = 0; len <= 300; ++len) {
      const uint8_t* p = buf.data() + offset;
      const uint32_t portable = tb::crc32c::ValuePortable(p, len);
      ASSERT_EQ(portable, ReferenceCrc32c(std::string(reinterpret_cast<const char*>(p), len)))
          << "len " << len << " offset " << offset;
      if (tb::crc32c::HasHardwareSupport()) {
        ASSERT_EQ(tb::crc32c::ValueHardware(p, len), portable)
            << "len " << len << " offset " << offset;
      }
      ASSERT_EQ(tb::crc32c::Value(p, len), portable);
      if (len > 0) {
        const size_t cut = len / 3;
        ASSERT_EQ(tb::crc32c::Extend(tb::crc32c::Value(p, cut), p + cut, len - cut), portable);
      }
    }
  }
}

// ---- framing and the hand encoder ---------------------------------------------------

TEST(Framing, KnownEventIsByteExact) {
  // Event{wall_time: 1.5, file_version: "brain.Event:2"} built by hand.
  double wt = 1.5;
  uint64_t wt_bits;
  std::memcpy(&wt_bits, &wt, 8);
  const std::string data = std::string("\x09", 1) + LE(wt_bits, 8) + "\x1a\x0d" + "brain.Event:2";
  const std::string len = LE(data.size(), 8);
  const std::string expected = len + LE(ReferenceMask(ReferenceCrc32c(len)), 4) + data +
                               LE(ReferenceMask(ReferenceCrc32c(data)), 4);
  Event e;
  e.set_wall_time(1.5);
  e.set_file_version("brain.Event:2");
  ASSERT_EQ(e.SerializeAsString(), data);
  std::string framed;
  tb::AppendRecord(e.SerializeAsString(), &framed);
  EXPECT_EQ(framed, expected);
  uint64_t length = 0;
  ASSERT_TRUE(tb::DecodeRecordHeader(framed.data(), &length));
  EXPECT_EQ(length, data.size());
  EXPECT_TRUE(tb::CheckRecordFooter(framed.data() + 12, length, framed.data() + 12 + length));
}

TEST(Framing, EveryLengthFieldCarriesTheReferenceChecksum) {
  // Lengths under 256 take their checksum from a table built at compile
  // time, longer ones compute it: both sides of the edge, one record at a
  // time and as a batch, against the bit-by-bit reference.
  std::string batch;
  std::string want_batch;
  for (size_t n = 0; n < 520; ++n) {
    const std::string data(n, static_cast<char>('a' + n % 26));
    const std::string len = LE(n, 8);
    const std::string want = len + LE(ReferenceMask(ReferenceCrc32c(len)), 4) + data +
                             LE(ReferenceMask(ReferenceCrc32c(data)), 4);
    std::string one;
    tb::AppendRecord(data, &one);
    ASSERT_EQ(one, want) << "length " << n;
    uint64_t decoded = 0;
    ASSERT_TRUE(tb::DecodeRecordHeader(one.data(), &decoded)) << "length " << n;
    ASSERT_EQ(decoded, n);
    const size_t at = batch.size();
    batch.resize(at + tb::kRecordOverhead + n, '\x5a');
    tb::EncodeRecordLength(n, batch.data() + at);
    std::memcpy(batch.data() + at + tb::kRecordHeaderSize, data.data(), n);
    want_batch += want;
  }
  tb::FinishRecords(batch.data(), batch.size());
  EXPECT_EQ(batch, want_batch);
}

TEST(Framing, BatchFramingEqualsOneByOneAndCountsWholeRecords) {
  // Records of 0, 1, 37 and 300 data bytes back to back, framed at once.
  const std::vector<std::string> payloads = {"", "a", std::string(37, 'b'), std::string(300, 'c')};
  std::string want;
  std::string batch;
  for (const auto& p : payloads) {
    tb::AppendRecord(p, &want);
    const size_t at = batch.size();
    batch.resize(at + tb::kRecordOverhead + p.size(), '\x5a');
    tb::EncodeRecordLength(p.size(), batch.data() + at);
    std::memcpy(batch.data() + at + tb::kRecordHeaderSize, p.data(), p.size());
  }
  tb::FinishRecords(batch.data(), batch.size());
  EXPECT_EQ(batch, want);
  // A write that stopped part way kept the records before the cut whole.
  size_t whole_bytes = 0;
  EXPECT_EQ(tb::CountWholeRecords(batch.data(), batch.size(), &whole_bytes), 4u);
  EXPECT_EQ(whole_bytes, batch.size());
  EXPECT_EQ(tb::CountWholeRecords(batch.data(), 16 + 17 + 52 - 1, &whole_bytes), 2u);
  EXPECT_EQ(whole_bytes, 16u + 17u);
  EXPECT_EQ(tb::CountWholeRecords(batch.data(), 16 + 17 + 53, &whole_bytes), 3u);
  EXPECT_EQ(whole_bytes, 16u + 17u + 53u);
  EXPECT_EQ(tb::CountWholeRecords(batch.data(), 15, &whole_bytes), 0u);
  EXPECT_EQ(whole_bytes, 0u);
}

TEST(ScalarEvent, HandEncodingEqualsProtobuf) {
  // Around 118 bytes the Value's and the Summary's lengths become two-byte
  // varints (the encoder's short-tag path ends there); around 256 the
  // record's length checksum is no longer looked up.
  const std::vector<std::string> tags = {"",           "a",  "loss/train", std::string(30, 'x'),
                                         std::string(31, 'y'), std::string(117, 's'),
                                         std::string(118, 's'), std::string(119, 's'),
                                         std::string(120, 's'), std::string(127, 't'),
                                         std::string(128, 'u'), std::string(240, 'w'),
                                         std::string(241, 'w'), std::string(300, 'v'),
                                         "\xc3\xa9t\xc3\xa9/\xe2\x82\xac"};
  const std::vector<int64_t> steps = {0,   1,     -1,   127, 128, 16383, 16384, 1 << 30,
                                      std::numeric_limits<int64_t>::max(),
                                      std::numeric_limits<int64_t>::min()};
  const std::vector<double> times = {0.0, -0.0, 1.5, 1712345678.123456, -3.25};
  const std::vector<float> values = {0.0f, -0.0f, 1.5f, -2.75e-30f, 3.4e38f,
                                     std::numeric_limits<float>::infinity()};
  int checked = 0;
  for (const auto& tag : tags) {
    for (int64_t step : steps) {
      for (double wt : times) {
        for (float v : values) {
          Event e;
          e.set_wall_time(wt);
          e.set_step(step);
          auto* value = e.mutable_summary()->add_value();
          value->set_tag(tag);
          value->set_simple_value(v);
          const std::string want = e.SerializeAsString();
          ASSERT_EQ(tb::ScalarEventSize(wt, step, tag), want.size());
          std::string got(want.size(), '\0');
          ASSERT_EQ(tb::EncodeScalarEvent(wt, step, tag, v, got.data()), want.size());
          ASSERT_EQ(got, want) << "tag size " << tag.size() << " step " << step << " wt " << wt;
          std::string framed_want;
          tb::AppendRecord(want, &framed_want);
          // Bytes past the record are left alone (the writer's buffer holds the next).
          std::string framed(tb::MaxScalarRecordSize(tag.size()) + 8, '\x5a');
          const size_t framed_size = tb::EncodeScalarRecord(wt, step, tag, v, framed.data());
          ASSERT_EQ(framed.substr(framed_size), std::string(framed.size() - framed_size, '\x5a'));
          framed.resize(framed_size);
          ASSERT_EQ(framed, framed_want);
          // Unframed, then framed as a batch: the same record.
          std::string batch(tb::MaxScalarRecordSize(tag.size()), '\0');
          batch.resize(tb::EncodeUnframedScalarRecord(wt, step, tag, v, batch.data()));
          tb::FinishRecords(batch.data(), batch.size());
          ASSERT_EQ(batch, framed_want);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 15 * 10 * 5 * 6);
}

TEST(EventFileName, MatchesPyTorchPattern) {
  EXPECT_EQ(tb::EventFileName(1700000000, "host", 42, 3, ".sfx"),
            "events.out.tfevents.1700000000.host.0000042.000003.sfx");
  EXPECT_EQ(tb::EventFileName(5, "h", 1, 0, ""), "events.out.tfevents.0000000005.h.0000001.000000");
  // Name order is creation order (TensorBoard reads a run's files by name).
  EXPECT_LT(tb::EventFileName(5, "h", 9999, 9, ""), tb::EventFileName(5, "h", 10000, 0, ""));
  EXPECT_LT(tb::EventFileName(5, "h", 7, 9, ""), tb::EventFileName(5, "h", 7, 10, ""));
  EXPECT_NE(tb::NewEventFileName(""), tb::NewEventFileName(""));
  const std::string d = tb::DefaultLogDir("_c");
  EXPECT_EQ(d.rfind("runs/", 0), 0u);
  EXPECT_NE(d.find(tb::HostName() + "_c"), std::string::npos);
}

// ---- histogram bucketing ------------------------------------------------------------

TEST(Histogram, FastBucketIndexEqualsBinarySearch) {
  const std::vector<double>& limits = tb::DefaultHistogramBucketLimits();
  ASSERT_EQ(limits.size(), 1551u);  // 774 powers of 1.1 and DBL_MAX per side, and 0
  EXPECT_EQ(limits.front(), -std::numeric_limits<double>::max());
  EXPECT_EQ(limits.back(), std::numeric_limits<double>::max());
  EXPECT_EQ(limits[limits.size() / 2], 0.0);
  EXPECT_EQ(limits[limits.size() / 2 + 1], 1e-12);
  // TensorFlow's rule: the first limit > v; DBL_MAX in the last bucket.
  auto reference = [&](double v) {
    const size_t i = static_cast<size_t>(std::upper_bound(limits.begin(), limits.end(), v) -
                                         limits.begin());
    return std::min(i, limits.size() - 1);
  };
  std::vector<double> probes = {0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e300, -1e300,
                                std::numeric_limits<double>::max(),
                                -std::numeric_limits<double>::max()};
  for (double l : limits) {
    probes.push_back(l);
    probes.push_back(std::nextafter(l, 0.0));
    probes.push_back(std::nextafter(l, l > 0 ? 1e308 : -1e308));
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exp10(-15, 22);
  for (int i = 0; i < 200000; ++i) {
    const double mag = std::pow(10.0, exp10(rng));
    probes.push_back(i % 2 ? mag : -mag);
  }
  for (double v : probes) {
    if (!std::isfinite(v)) continue;
    ASSERT_EQ(tb::DefaultHistogramBucketIndex(v), reference(v)) << v;
  }
}

TEST(Histogram, RejectsEmptyAndNonFinite) {
  tb::proto::HistogramProto h;
  std::vector<double> none;
  EXPECT_THAT(std::string(tb::BuildHistogram(none, &h).message()), HasSubstr("no values"));
  std::vector<double> bad = {1.0, std::nan(""), 2.0, INFINITY};
  absl::Status s = tb::BuildHistogram(bad, &h);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("2 non-finite value(s)"));
}

// ---- writer round trips -------------------------------------------------------------

TEST(Writer, FirstRecordIsFileVersionAndScalarsRoundTrip) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w);
  // The first record is on disk before anything else happens.
  {
    absl::StatusOr<tb::EventFileContents> c = tb::ReadEventFile(w->file_path());
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(c->events.size(), 1u);
    EXPECT_EQ(c->events[0].file_version(), "brain.Event:2");
    EXPECT_GT(c->events[0].wall_time(), 1.6e9);
  }
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(w->add_scalar(i % 2 ? "loss/train" : "a_rather_long_tag_name_over_thirty_bytes/x",
                              i * 0.5, i - 10, 1700000000.25 + i));
  }
  ASSERT_TRUE(w->flush().ok());
  EXPECT_EQ(w->counters().records_written, 1001u);
  ASSERT_TRUE(w->close().ok());
  EXPECT_FALSE(w->add_scalar("late", 1, 1));

  const std::string name = fs::path(w->file_path()).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u);
  const std::vector<Event> ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 1001u);
  for (int i = 0; i < 1000; ++i) {
    const Event& e = ev[i + 1];
    ASSERT_EQ(e.step(), i - 10);
    ASSERT_DOUBLE_EQ(e.wall_time(), 1700000000.25 + i);
    ASSERT_EQ(e.summary().value_size(), 1);
    EXPECT_EQ(e.summary().value(0).tag(),
              i % 2 ? "loss/train" : "a_rather_long_tag_name_over_thirty_bytes/x");
    EXPECT_FLOAT_EQ(e.summary().value(0).simple_value(), i * 0.5f);
  }
}

// add_scalar's default wall time is the coarse clock: about one tick
// (<= 4 ms, else it falls back to the precise clock) behind, never ahead,
// and finer than a second.
TEST(Writer, WallTimeDefaultsToNowWithSubSecondPrecision) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  const double before = tb::NowSeconds();
  w->add_scalar("x", 1, 0);
  const double after = tb::NowSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  w->add_scalar("x", 2, 1);
  w->add_histogram("h", std::vector<double>{1.0}, 1);  // the precise clock
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_GE(ev[1].wall_time(), before - 0.010);
  EXPECT_LE(ev[1].wall_time(), after);
  EXPECT_GE(ev[2].wall_time() - ev[1].wall_time(), 0.015);  // 30 ms apart, less a tick each
  EXPECT_LE(ev[2].wall_time(), ev[3].wall_time());
}

TEST(Writer, PeriodicFlushWritesWithoutAnyCall) {
  TempDir dir;
  tb::SummaryWriterOptions opt;
  opt.flush_secs = 0.05;
  auto w = MakeWriter(dir.path(), opt);
  ASSERT_TRUE(w->add_scalar("x", 1, 1));
  // Poll (generously) until the periodic flush has written the record.
  size_t events = 0;
  for (int i = 0; i < 1000 && events < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto c = tb::ReadEventFile(w->file_path());
    ASSERT_TRUE(c.ok());
    events = c->events.size();
  }
  EXPECT_EQ(events, 2u);
}

// request_flush() returns at once, and the writer thread writes what came
// before it with no other call, napping or asleep. flush_secs is the
// default 120 s and max_queue 65536, so neither a periodic flush nor a
// producer's wake-up (every 8192nd record) writes them instead.
TEST(Writer, RequestFlushWritesWithoutAnotherCallNappingOrAsleep) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  auto events_on_disk = [&](size_t want) {
    size_t events = 0;
    for (int i = 0; i < 2000 && events < want; ++i) {  // polled generously
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      auto c = tb::ReadEventFile(w->file_path());
      if (!c.ok()) return size_t{0};
      events = c->events.size();
    }
    return events;
  };
  ASSERT_TRUE(w->add_scalar("x", 0, 0));
  ASSERT_TRUE(w->flush().ok());  // the writer thread drained a record: it naps (2 ms) now
  // Napping: the request does not wake it; it finds the request itself.
  ASSERT_TRUE(w->add_scalar("x", 1, 1));
  ASSERT_TRUE(w->request_flush().ok());
  EXPECT_EQ(events_on_disk(3), 3u);
  // Asleep: a nap that found nothing ended in a sleep; the request wakes it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(w->add_scalar("x", 2, 2));
  ASSERT_TRUE(w->request_flush().ok());
  EXPECT_EQ(events_on_disk(4), 4u);
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 4u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ev[i + 1].step(), i);
}

TEST(Writer, AddScalarsWritesOneSubRunPerSeries) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  for (int step = 0; step < 5; ++step) {
    ASSERT_TRUE(w->add_scalars("loss/all", {{"train", 1.0 * step}, {"val", 2.0 * step}}, step));
  }
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(ReadRun(dir.path()).size(), 1u);  // only file_version in the run itself
  for (const auto& [series, factor] : std::vector<std::pair<std::string, double>>{
           {"train", 1.0}, {"val", 2.0}}) {
    const auto ev = ReadRun(dir.Sub("loss_all_" + series));
    ASSERT_EQ(ev.size(), 6u) << series;
    for (int step = 0; step < 5; ++step) {
      EXPECT_EQ(ev[step + 1].step(), step);
      EXPECT_EQ(ev[step + 1].summary().value(0).tag(), "loss/all");
      EXPECT_FLOAT_EQ(ev[step + 1].summary().value(0).simple_value(), factor * step);
    }
  }
  EXPECT_EQ(w->counters().records_written, 1u + 2u * 6u);
}

void CheckHistogram(const tb::proto::HistogramProto& h, const std::vector<double>& values) {
  ASSERT_FALSE(values.empty());
  EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
  EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
  EXPECT_EQ(h.num(), static_cast<double>(values.size()));
  double sum = 0, sq = 0;
  for (double v : values) {
    sum += v;
    sq += v * v;
  }
  EXPECT_NEAR(h.sum(), sum, 1e-9 * std::max(1.0, std::fabs(sum)));
  EXPECT_NEAR(h.sum_squares(), sq, 1e-9 * sq);
  ASSERT_EQ(h.bucket_limit_size(), h.bucket_size());
  ASSERT_GT(h.bucket_size(), 0);
  // Each emitted bucket must hold exactly the values in [previous limit, limit),
  // as TensorFlow's writer counts.
  double total = 0;
  for (int i = 0; i < h.bucket_size(); ++i) {
    const double lo = i == 0 ? -std::numeric_limits<double>::infinity() : h.bucket_limit(i - 1);
    const double hi = h.bucket_limit(i);
    ASSERT_LT(lo, hi);
    const auto direct = std::count_if(values.begin(), values.end(),
                                      [&](double v) { return v >= lo && v < hi; });
    ASSERT_EQ(h.bucket(i), static_cast<double>(direct)) << "bucket " << i << " [" << lo << ", "
                                                        << hi << ")";
    total += h.bucket(i);
  }
  EXPECT_EQ(total, static_cast<double>(values.size()));
  // Only the non-empty stretch: first and last buckets are non-empty.
  EXPECT_GT(h.bucket(0), 0);
  EXPECT_GT(h.bucket(h.bucket_size() - 1), 0);
}

TEST(Writer, HistogramRoundTrip) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  std::mt19937 rng(42);
  std::normal_distribution<double> normal(0.5, 2.0);
  std::vector<double> values(5000);
  for (double& v : values) v = normal(rng);
  values[0] = 0.0;
  values[1] = 1e-12;  // exactly a limit
  ASSERT_TRUE(w->add_histogram("weights", values, 7));
  at::Tensor t = at::arange(-50, 50, at::kFloat).reshape({10, 10}) * 0.25;
  ASSERT_TRUE(w->add_histogram("tensor", t, 8));
  at::Tensor ints = at::tensor({3, 3, 3, 1000}, at::kLong);
  ASSERT_TRUE(w->add_histogram("ints", ints, 9));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 3u);
  EXPECT_EQ(vals[0].first, 7);
  EXPECT_EQ(vals[0].second.tag(), "weights");
  ASSERT_TRUE(vals[0].second.has_histo());
  CheckHistogram(vals[0].second.histo(), values);
  std::vector<double> tv;
  for (int i = -50; i < 50; ++i) tv.push_back(i * 0.25);
  CheckHistogram(vals[1].second.histo(), tv);
  CheckHistogram(vals[2].second.histo(), {3, 3, 3, 1000});
}

TEST(Writer, ImageRoundTripDecodesWithLibpng) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  // CHW float [3, 8, 5]: channel c, row y, column x = (c*40 + y*5 + x) / 119.
  at::Tensor chw = at::arange(0, 120, at::kFloat).reshape({3, 8, 5}) / 119.0;
  ASSERT_TRUE(w->add_image("chw", chw, 1));
  // HWC uint8 RGBA [4, 6, 4].
  at::Tensor hwc = at::arange(0, 96, at::kLong).reshape({4, 6, 4}).to(at::kByte);
  ASSERT_TRUE(w->add_image("hwc", hwc, 2, "HWC"));
  // PNG encoding happens later on the writer thread: what was passed is what
  // is written, even if the caller reuses its tensor at once.
  hwc.fill_(0);
  chw.fill_(0);
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 2u);

  const auto& img = vals[0].second.image();
  EXPECT_EQ(img.width(), 5);
  EXPECT_EQ(img.height(), 8);
  EXPECT_EQ(img.colorspace(), 3);
  const std::string& png = img.encoded_image_string();
  ASSERT_GT(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(static_cast<uint8_t>(png[24]), 8);  // bit depth
  EXPECT_EQ(static_cast<uint8_t>(png[25]), 2);  // colour type RGB
  const DecodedPng d = DecodePng(png);
  ASSERT_TRUE(d.ok);
  ASSERT_EQ(d.width, 5);
  ASSERT_EQ(d.height, 8);
  ASSERT_EQ(d.channels, 3);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 5; ++x) {
      for (int c = 0; c < 3; ++c) {
        const float v = static_cast<float>(c * 40 + y * 5 + x) / 119.0f;
        const int want = static_cast<int>(std::min(255.0f, std::max(0.0f, v * 255.0f)));
        ASSERT_EQ(d.pixels[(y * 5 + x) * 3 + c], want) << y << "," << x << "," << c;
      }
    }
  }
  const auto& rgba = vals[1].second.image();
  EXPECT_EQ(rgba.colorspace(), 4);
  const DecodedPng d2 = DecodePng(rgba.encoded_image_string());
  ASSERT_TRUE(d2.ok);
  ASSERT_EQ(d2.channels, 4);
  ASSERT_EQ(d2.width, 6);
  ASSERT_EQ(d2.height, 4);
  for (int i = 0; i < 96; ++i) ASSERT_EQ(d2.pixels[i], i);
}

TEST(Writer, ImagesAreTiledIntoAGrid) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  // 10 gray 4x6 images; image i is filled with 10 * (i + 1).
  at::Tensor batch = at::empty({10, 1, 4, 6}, at::kByte);
  for (int i = 0; i < 10; ++i) batch[i].fill_(10 * (i + 1));
  ASSERT_TRUE(w->add_images("grid", batch, 3));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 1u);
  const auto& img = vals[0].second.image();
  EXPECT_EQ(img.width(), 8 * 6);
  EXPECT_EQ(img.height(), 2 * 4);
  EXPECT_EQ(img.colorspace(), 1);
  const DecodedPng d = DecodePng(img.encoded_image_string());
  ASSERT_TRUE(d.ok);
  ASSERT_EQ(d.channels, 1);
  auto at_px = [&](int y, int x) { return d.pixels[y * 48 + x]; };
  for (int i = 0; i < 16; ++i) {
    const int row = i / 8, col = i % 8;
    const int want = i < 10 ? 10 * (i + 1) : 0;  // black where no image
    EXPECT_EQ(at_px(row * 4 + 1, col * 6 + 2), want) << "cell " << i;
  }
}

// The grid PyTorch's make_grid gives (no padding), from uint8 NHWC images:
// min(N, 8) columns, black cells after the last image.
at::Tensor ReferenceGrid(const at::Tensor& nhwc) {
  const int64_t n = nhwc.size(0), h = nhwc.size(1), w = nhwc.size(2), c = nhwc.size(3);
  const int64_t cols = std::min<int64_t>(n, 8), rows = (n + cols - 1) / cols;
  at::Tensor padded = at::cat({nhwc, at::zeros({rows * cols - n, h, w, c}, nhwc.options())}, 0);
  return padded.reshape({rows, cols, h, w, c}).permute({0, 2, 1, 3, 4}).reshape({rows * h, cols * w, c});
}

// Every pixel of a float image batch against the ATen ops that define the
// conversion (nan_to_num, * 255, clamp, truncate), tiled as make_grid tiles.
TEST(Writer, ImagePixelsMatchTheTensorOpsConversionEverywhere) {
  at::manual_seed(3);
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (const int64_t n : {1, 5, 10}) {
      SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << ", " << n << " images");
      at::Tensor batch = (at::rand({n, 3, 4, 6}, at::TensorOptions().dtype(dtype)) * 1.4 - 0.2);
      auto flat = batch.view({-1});
      flat[0] = std::numeric_limits<double>::quiet_NaN();
      flat[1] = std::numeric_limits<double>::infinity();
      flat[2] = -std::numeric_limits<double>::infinity();
      flat[3] = 1.0;
      flat[4] = 0.0;
      flat[5] = 254.5 / 255.0;  // just under a step: truncated, not rounded
      const at::Tensor bytes = at::nan_to_num(batch.to(at::kFloat), 0.0, 255.0, 0.0)
                                   .mul(255.0).clamp(0.0, 255.0).to(at::kByte);
      const at::Tensor want = ReferenceGrid(bytes.permute({0, 2, 3, 1})).contiguous();
      absl::StatusOr<tb::ImageCanvas> canvas = tb::PrepareImage("x", batch, "NCHW");
      ASSERT_TRUE(canvas.ok()) << canvas.status();
      ASSERT_EQ(canvas->height, want.size(0));
      ASSERT_EQ(canvas->width, want.size(1));
      ASSERT_EQ(canvas->channels, 3);
      ASSERT_EQ(canvas->pixels.size(), static_cast<size_t>(want.numel()));
      const uint8_t* w = want.data_ptr<uint8_t>();
      for (size_t i = 0; i < canvas->pixels.size(); ++i) {
        ASSERT_EQ(canvas->pixels[i], w[i]) << "byte " << i;
      }
    }
  }
}

TEST(Writer, TextRoundTrip) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_text("notes", "**bold** and `code`", 4));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 1u);
  const auto& v = vals[0].second;
  EXPECT_EQ(v.tag(), "notes");
  EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "text");
  EXPECT_EQ(v.metadata().data_class(), tb::proto::DATA_CLASS_TENSOR);
  EXPECT_EQ(v.tensor().dtype(), tb::proto::DT_STRING);
  EXPECT_EQ(v.tensor().tensor_shape().dim_size(), 0);
  ASSERT_EQ(v.tensor().string_val_size(), 1);
  EXPECT_EQ(v.tensor().string_val(0), "**bold** and `code`");
}

TEST(Writer, HParamsInTheRunItself) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_scalar("loss/val", 0.9, 10));
  trainbus::HParams hp = {{"lr", 0.01}, {"nesterov", true}, {"optimizer", std::string("sgd")}};
  ASSERT_TRUE(w->add_hparams(hp, {{"loss/val", 0.5}, {"acc", 0.875}}, 99));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 6u);
  namespace hpb = tb::proto::hparams;
  auto plugin = [&](size_t i) {
    hpb::HParamsPluginData d;
    EXPECT_EQ(vals[i].second.metadata().plugin_data().plugin_name(), "hparams");
    EXPECT_TRUE(d.ParseFromString(vals[i].second.metadata().plugin_data().content()));
    EXPECT_EQ(d.version(), 0);
    return d;
  };
  EXPECT_EQ(vals[1].second.tag(), "_hparams_/experiment");
  const hpb::Experiment exp = plugin(1).experiment();
  ASSERT_EQ(exp.hparam_infos_size(), 3);
  EXPECT_EQ(exp.hparam_infos(0).name(), "lr");
  EXPECT_EQ(exp.hparam_infos(0).type(), hpb::DATA_TYPE_FLOAT64);
  EXPECT_EQ(exp.hparam_infos(1).name(), "nesterov");
  EXPECT_EQ(exp.hparam_infos(1).type(), hpb::DATA_TYPE_BOOL);
  EXPECT_EQ(exp.hparam_infos(2).type(), hpb::DATA_TYPE_STRING);
  ASSERT_EQ(exp.metric_infos_size(), 2);
  EXPECT_EQ(exp.metric_infos(0).name().tag(), "acc");
  EXPECT_EQ(exp.metric_infos(1).name().tag(), "loss/val");

  EXPECT_EQ(vals[2].second.tag(), "_hparams_/session_start_info");
  const hpb::SessionStartInfo start = plugin(2).session_start_info();
  EXPECT_DOUBLE_EQ(start.hparams().at("lr").number_value(), 0.01);
  EXPECT_TRUE(start.hparams().at("nesterov").bool_value());
  EXPECT_EQ(start.hparams().at("optimizer").string_value(), "sgd");
  EXPECT_GT(start.start_time_secs(), 1.6e9);

  EXPECT_EQ(vals[3].second.tag(), "_hparams_/session_end_info");
  EXPECT_EQ(plugin(3).session_end_info().status(), hpb::STATUS_SUCCESS);

  EXPECT_EQ(vals[4].second.tag(), "acc");
  EXPECT_FLOAT_EQ(vals[4].second.simple_value(), 0.875f);
  EXPECT_EQ(vals[4].first, 99);
  EXPECT_EQ(vals[5].second.tag(), "loss/val");
  EXPECT_FLOAT_EQ(vals[5].second.simple_value(), 0.5f);
}

TEST(Writer, HParamsWithRunNameGoToASubRun) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_hparams({{"lr", 0.1}}, {{"m", 1.0}}, 0, "trial1"));
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(ReadRun(dir.path()).size(), 1u);
  EXPECT_EQ(Values(ReadRun(dir.Sub("trial1"))).size(), 4u);
}

TEST(Summaries, PrCurveMatchesDirectComputation) {
  const std::vector<float> labels = {1, 0, 1, 1, 0, 0, 1};
  const std::vector<float> preds = {0.1f, 0.4f, 0.35f, 0.8f, 0.9f, 0.05f, 0.6f};
  const int n = 5;
  at::Tensor l = at::tensor(labels);
  at::Tensor p = at::tensor(preds).reshape({7, 1});  // shapes may differ
  absl::StatusOr<std::vector<float>> table = tb::ComputePrCurve(l.to(at::kBool), p, n);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->size(), 6u * n);
  const float positives = 4, negatives = 3;
  for (int i = 0; i < n; ++i) {
    const float thr = static_cast<float>(i) / (n - 1);
    float tp = 0, fp = 0;
    for (size_t k = 0; k < labels.size(); ++k) {
      if (preds[k] >= thr) (labels[k] > 0 ? tp : fp) += 1;
    }
    const float tn = negatives - fp, fn = positives - tp;
    EXPECT_EQ((*table)[0 * n + i], tp) << i;
    EXPECT_EQ((*table)[1 * n + i], fp) << i;
    EXPECT_EQ((*table)[2 * n + i], tn) << i;
    EXPECT_EQ((*table)[3 * n + i], fn) << i;
    EXPECT_FLOAT_EQ((*table)[4 * n + i], tp / std::max(1e-7f, tp + fp)) << i;
    EXPECT_FLOAT_EQ((*table)[5 * n + i], tp / std::max(1e-7f, tp + fn)) << i;
  }

  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_pr_curve("pr", l, p, 12, n));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 1u);
  const auto& v = vals[0].second;
  EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "pr_curves");
  tb::proto::PrCurvePluginData pd;
  ASSERT_TRUE(pd.ParseFromString(v.metadata().plugin_data().content()));
  EXPECT_EQ(pd.num_thresholds(), static_cast<uint32_t>(n));
  EXPECT_EQ(v.tensor().dtype(), tb::proto::DT_FLOAT);
  ASSERT_EQ(v.tensor().tensor_shape().dim_size(), 2);
  EXPECT_EQ(v.tensor().tensor_shape().dim(0).size(), 6);
  EXPECT_EQ(v.tensor().tensor_shape().dim(1).size(), n);
  ASSERT_EQ(v.tensor().float_val_size(), 6 * n);
  for (int i = 0; i < 6 * n; ++i) EXPECT_EQ(v.tensor().float_val(i), (*table)[i]);
}

TEST(Writer, CustomScalarsLayout) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  trainbus::CustomScalarLayout layout = {
      {"Losses", {{"train vs val", {"loss/train", "loss/val"}, {}}}, false},
      {"Bounds", {{"acc", {}, {{"acc/mean", "acc/lo", "acc/hi"}}}}, true}};
  ASSERT_TRUE(w->add_custom_scalars(layout));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 1u);
  EXPECT_EQ(vals[0].first, 0);
  const auto& v = vals[0].second;
  EXPECT_EQ(v.tag(), "custom_scalars__config__");
  EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "custom_scalars");
  ASSERT_EQ(v.tensor().string_val_size(), 1);
  tb::proto::Layout pb;
  ASSERT_TRUE(pb.ParseFromString(v.tensor().string_val(0)));
  ASSERT_EQ(pb.category_size(), 2);
  EXPECT_EQ(pb.category(0).title(), "Losses");
  EXPECT_FALSE(pb.category(0).closed());
  ASSERT_EQ(pb.category(0).chart(0).multiline().tag_size(), 2);
  EXPECT_EQ(pb.category(0).chart(0).multiline().tag(1), "loss/val");
  EXPECT_TRUE(pb.category(1).closed());
  ASSERT_TRUE(pb.category(1).chart(0).has_margin());
  EXPECT_EQ(pb.category(1).chart(0).margin().series(0).upper(), "acc/hi");
}

uint32_t U32At(const std::string& s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}
uint16_t U16At(const std::string& s, size_t at) {
  uint16_t v;
  std::memcpy(&v, s.data() + at, 2);
  return v;
}

TEST(Writer, AudioIsPcmWav) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  at::Tensor mono = at::sin(at::arange(0, 100, at::kFloat) * 0.1);
  mono[0] = 2.0;  // clamped to 1
  ASSERT_TRUE(w->add_audio("mono", mono, 5, 16000));
  ASSERT_TRUE(w->add_audio("stereo", at::zeros({50, 2}), 6, 8000));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 2u);
  // TensorBoard's blob-sequence form: DT_STRING [1] = the WAV, encoding WAV.
  const auto& a = vals[0].second;
  EXPECT_EQ(a.metadata().plugin_data().plugin_name(), "audio");
  EXPECT_EQ(a.metadata().data_class(), tb::proto::DATA_CLASS_BLOB_SEQUENCE);
  tb::proto::AudioPluginData data;
  ASSERT_TRUE(data.ParseFromString(a.metadata().plugin_data().content()));
  EXPECT_EQ(data.encoding(), tb::proto::AudioPluginData::WAV);
  EXPECT_EQ(a.tensor().dtype(), tb::proto::DT_STRING);
  ASSERT_EQ(a.tensor().tensor_shape().dim_size(), 1);
  EXPECT_EQ(a.tensor().tensor_shape().dim(0).size(), 1);
  ASSERT_EQ(a.tensor().string_val_size(), 1);
  const std::string& wav = a.tensor().string_val(0);
  ASSERT_EQ(wav.size(), 44u + 200u);
  EXPECT_EQ(wav.substr(0, 4), "RIFF");
  EXPECT_EQ(U32At(wav, 4), 36u + 200u);
  EXPECT_EQ(wav.substr(8, 8), "WAVEfmt ");
  EXPECT_EQ(U16At(wav, 20), 1);  // PCM
  EXPECT_EQ(U16At(wav, 22), 1);  // channels
  EXPECT_EQ(U32At(wav, 24), 16000u);
  EXPECT_EQ(U32At(wav, 28), 32000u);
  EXPECT_EQ(U16At(wav, 34), 16);
  EXPECT_EQ(wav.substr(36, 4), "data");
  EXPECT_EQ(U32At(wav, 40), 200u);
  EXPECT_EQ(static_cast<int16_t>(U16At(wav, 44)), 32767);
  EXPECT_EQ(static_cast<int16_t>(U16At(wav, 46)), static_cast<int16_t>(std::sin(0.1f) * 32767));
  const std::string& stereo = vals[1].second.tensor().string_val(0);
  EXPECT_EQ(U16At(stereo, 22), 2);  // channels
  EXPECT_EQ(U32At(stereo, 24), 8000u);
  EXPECT_EQ(stereo.size(), 44u + 200u);
}

// A float or double CPU tensor in one block is read in place; every other
// form is copied first. Both give the histogram of the span of the same
// numbers (values in quarters: every summation order gives the same sum).
TEST(Writer, HistogramOfATensorReadInPlaceOrCopiedIsTheSame) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  std::vector<float> floats;
  for (int i = 0; i < 1000; ++i) floats.push_back(0.25f * static_cast<float>((i * 37) % 101 - 50));
  const at::Tensor grid = at::tensor(floats).reshape({20, 50});
  ASSERT_TRUE(w->add_histogram("h", absl::MakeConstSpan(floats), 0));
  ASSERT_TRUE(w->add_histogram("h", grid, 1));                          // in place, 2-D
  ASSERT_TRUE(w->add_histogram("h", grid.t(), 2));                      // not contiguous: copied
  ASSERT_TRUE(w->add_histogram("h", grid.clone().requires_grad_(), 3));  // in place
  ASSERT_TRUE(w->add_histogram("h", at::_neg_view(grid.neg()), 4));     // memory holds -x: copied
  ASSERT_TRUE(w->add_histogram("h", grid.to(at::kDouble), 5));           // double, in place
  ASSERT_TRUE(w->add_histogram("h", grid.to(at::kHalf), 6));             // half: copied to double
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 7u);
  for (size_t i = 1; i < vals.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(vals[i].second.histo().SerializeAsString(), vals[0].second.histo().SerializeAsString());
  }
}

// The writer thread buckets the caller's copy of the values; the copy is
// streamed in 64-byte blocks from 4 KiB on, with an ordinary tail. Every
// size around those edges, from spans that start on any float or double
// boundary, gives exactly the histogram of the caller's numbers.
TEST(Writer, HistogramCopiesEveryValueWhateverItsSizeAndAlignment) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  std::vector<double> doubles(5000);
  for (size_t i = 0; i < doubles.size(); ++i) doubles[i] = std::sin(0.37 * i) * (1 + i % 7);
  const std::vector<float> floats(doubles.begin(), doubles.end());
  std::vector<std::string> expected;
  int64_t step = 0;
  for (size_t n : {1, 7, 8, 9, 511, 512, 513, 1023, 1024, 1025, 1031, 2047, 2048, 2049, 4095}) {
    for (size_t offset : {0, 1, 3}) {
      SCOPED_TRACE(absl::StrCat(n, " values from ", offset));
      const auto d = absl::MakeConstSpan(doubles).subspan(offset, n);
      const auto f = absl::MakeConstSpan(floats).subspan(offset, n);
      tb::proto::HistogramProto h;
      ASSERT_TRUE(tb::BuildHistogram(d, &h).ok());
      expected.push_back(h.SerializeAsString());
      ASSERT_TRUE(tb::BuildHistogram(f, &h).ok());
      expected.push_back(h.SerializeAsString());
      ASSERT_TRUE(w->add_histogram("d", d, step++));
      ASSERT_TRUE(w->add_histogram("f", f, step++));
    }
  }
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), expected.size());
  for (size_t i = 0; i < vals.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(vals[i].second.histo().SerializeAsString(), expected[i]);
  }
}

// The LibTorch-free forms (summaries.h) write exactly what the tensor forms
// write for the same numbers: the tensor layer only converts.
TEST(Writer, PlainArrayFormsEqualTheTensorForms) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  std::vector<float> floats;
  for (int i = 0; i < 1000; ++i) floats.push_back(std::sin(0.37f * i) * (1 + i % 7));
  ASSERT_TRUE(w->add_histogram("h", absl::MakeConstSpan(floats), 1));
  ASSERT_TRUE(w->add_histogram("h", at::tensor(floats), 2));
  at::Tensor hwc = at::arange(0, 4 * 6 * 3, at::kLong).reshape({4, 6, 3}).to(at::kByte);
  std::vector<uint8_t> pixels(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
  ASSERT_TRUE(w->add_image("img", tb::ImagePixels{pixels, 4, 6, 3}, 1));
  ASSERT_TRUE(w->add_image("img", hwc, 2, "HWC"));
  std::vector<double> labels{1, 0, 1, 1, 0}, predictions{0.9, 0.2, 0.6, 0.4, 0.55};
  ASSERT_TRUE(w->add_pr_curve("pr", labels, predictions, 1, 11));
  ASSERT_TRUE(w->add_pr_curve("pr", at::tensor(labels), at::tensor(predictions), 2, 11));
  std::vector<float> stereo;
  for (int i = 0; i < 64; ++i) stereo.push_back(std::cos(0.2f * i) * (i % 2 ? 1.5f : 0.5f));
  ASSERT_TRUE(w->add_audio("au", tb::AudioSamples{stereo, 2, 8000}, 1));
  ASSERT_TRUE(w->add_audio("au", at::tensor(stereo).reshape({32, 2}), 2, 8000));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 8u);
  for (size_t i = 0; i < vals.size(); i += 2) {
    SCOPED_TRACE(vals[i].second.tag());
    EXPECT_EQ(vals[i].first, 1);
    EXPECT_EQ(vals[i + 1].first, 2);
    EXPECT_EQ(vals[i].second.SerializeAsString(), vals[i + 1].second.SerializeAsString());
  }
  DecodedPng png = DecodePng(vals[2].second.image().encoded_image_string());
  ASSERT_TRUE(png.ok);
  EXPECT_EQ(png.pixels, pixels);
}

TEST(Writer, RawHistogramsAndBadPlainInputGetClearErrors) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  tb::RawHistogram raw;
  raw.min = -1;
  raw.max = 3;
  raw.num = 6;
  raw.sum = 5;
  raw.sum_squares = 15;
  raw.bucket_limits = {0, 1, 3};
  raw.bucket_counts = {1, 2, 3};
  ASSERT_TRUE(w->add_histogram_raw("raw", raw, 4));
  tb::RawHistogram descending = raw;
  descending.bucket_limits = {0, 2, 1};
  EXPECT_FALSE(w->add_histogram_raw("raw", descending, 5));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("histogram 'raw': bucket_limits must be ascending; #2 is 1"));
  tb::RawHistogram uneven = raw;
  uneven.bucket_counts = {1, 2};
  EXPECT_FALSE(w->add_histogram_raw("raw", uneven, 5));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("bucket_limits (3) and bucket_counts (2)"));
  std::vector<uint8_t> few(10);
  EXPECT_FALSE(w->add_image("img", tb::ImagePixels{few, 4, 4, 3}, 1));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("image 'img': 10 bytes of pixels for 4 x 4 x 3 (48 needed)"));
  EXPECT_FALSE(w->add_image("img", tb::ImagePixels{few, 5, 1, 2}, 1));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("2 channel(s); an image needs 1 (gray), 3"));
  std::vector<float> odd(5);
  EXPECT_FALSE(w->add_audio("au", tb::AudioSamples{odd, 2, 8000}, 1));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("audio 'au': need at least one frame and 1-64 channels, got 5 sample(s) "
                        "for 2 channel(s)"));
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 1u);
  const auto& h = vals[0].second.histo();
  EXPECT_EQ(h.min(), -1);
  EXPECT_EQ(h.num(), 6);
  EXPECT_THAT(std::vector<double>(h.bucket_limit().begin(), h.bucket_limit().end()),
              ::testing::ElementsAre(0, 1, 3));
  EXPECT_THAT(std::vector<double>(h.bucket().begin(), h.bucket().end()),
              ::testing::ElementsAre(1, 2, 3));
}

TEST(Writer, AddRecordDispatchesEveryKind) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  using trainbus::Record;
  std::vector<Record> records = {
      Record::Scalar("s", 1.5, 1),
      Record::Histogram("h", at::randn({100}), 2),
      Record::Image("i", at::rand({3, 4, 4}), 3),
      Record::Text("t", "hi", 4),
      Record{"", 5, 0.0, trainbus::HParamsValue{{{"lr", 0.1}}, {{"s", 1.5}}}},
      Record{"pr", 6, 1700000000.5,
             trainbus::PrCurveValue{at::tensor({1, 0}), at::tensor({0.7, 0.2}), 11}},
      Record{"", 0, 0.0, trainbus::CustomScalarsValue{{{"c", {{"x", {"s"}, {}}}, false}}}},
      Record{"a", 8, 0.0, trainbus::AudioValue{at::zeros({10}), 8000}},
  };
  for (const Record& r : records) ASSERT_TRUE(w->add_record(r)) << r.tag;
  ASSERT_TRUE(w->close().ok());
  absl::StatusOr<tb::InspectReport> report = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->runs.size(), 1u);
  std::map<std::string, std::string> kinds;
  for (const auto& t : report->runs[0].tags) kinds[t.tag] = t.kind;
  EXPECT_EQ(kinds["s"], "scalar");
  EXPECT_EQ(kinds["h"], "histogram");
  EXPECT_EQ(kinds["i"], "image");
  EXPECT_EQ(kinds["t"], "text");
  EXPECT_EQ(kinds["_hparams_/experiment"], "hparams");
  EXPECT_EQ(kinds["pr"], "pr_curve");
  EXPECT_EQ(kinds["custom_scalars__config__"], "custom_scalars");
  EXPECT_EQ(kinds["a"], "audio");
  const auto vals = Values(ReadRun(dir.path()));
  for (const auto& [step, v] : vals) {
    if (v.tag() == "pr") {
      EXPECT_EQ(step, 6);
    }
  }
}

TEST(Writer, TwoWritersInOneDirectory) {
  TempDir dir;
  auto a = MakeWriter(dir.path());
  auto b = MakeWriter(dir.path());
  ASSERT_NE(a->file_path(), b->file_path());
  a->add_scalar("a", 1, 1);
  b->add_scalar("b", 2, 1);
  ASSERT_TRUE(a->close().ok());
  ASSERT_TRUE(b->close().ok());
  const auto files = EventFiles(dir.path());
  ASSERT_EQ(files.size(), 2u);
  for (const auto& f : files) {
    auto c = tb::ReadEventFile(f);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->end, tb::EventFileReader::State::kEnd);
    ASSERT_EQ(c->events.size(), 2u);
    EXPECT_EQ(c->events[1].summary().value(0).tag(), f == a->file_path() ? "a" : "b");
  }
}

TEST(Writer, PurgeStepWritesFileVersionAndSessionStart) {
  TempDir dir;
  tb::SummaryWriterOptions opt;
  opt.purge_step = 500;
  opt.filename_suffix = ".resumed";
  auto w = MakeWriter(dir.path(), opt);
  EXPECT_NE(w->file_path().find(".resumed"), std::string::npos);
  w->add_scalar("x", 1, 500);
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].file_version(), "brain.Event:2");
  EXPECT_EQ(ev[1].step(), 500);
  EXPECT_EQ(ev[1].file_version(), "brain.Event:2");
  EXPECT_EQ(ev[2].step(), 500);
  EXPECT_EQ(ev[2].session_log().status(), tb::proto::SessionLog::START);
  EXPECT_EQ(ev[3].summary().value(0).tag(), "x");
}

TEST(Writer, BadInputIsRejectedWithAClearMessage) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  EXPECT_FALSE(w->add_image("img", at::zeros({2, 8, 8}), 0));  // 2 channels, CHW
  EXPECT_THAT(std::string(w->last_rejection().message()),
              HasSubstr("image 'img': 2 channel(s) in layout CHW (shape [2, 8, 8])"));
  EXPECT_FALSE(w->add_image("img", at::zeros({8, 8}), 0, "CHW"));
  EXPECT_THAT(std::string(w->last_rejection().message()), HasSubstr("needs a 3-D tensor"));
  EXPECT_FALSE(w->add_pr_curve("pr", at::ones({5}), at::ones({4}) * 0.5, 0));
  EXPECT_THAT(std::string(w->last_rejection().message()),
              HasSubstr("labels has 5 element(s) (shape [5]) but predictions has 4"));
  EXPECT_FALSE(w->add_pr_curve("pr", at::ones({2}), at::ones({2}) * 0.5, 0, 1));
  EXPECT_THAT(std::string(w->last_rejection().message()),
              HasSubstr("num_thresholds must be at least 2 (got 1)"));
  EXPECT_FALSE(w->add_pr_curve("pr", at::ones({2}), at::ones({2}) * 1.5, 0));
  EXPECT_THAT(std::string(w->last_rejection().message()), HasSubstr("in [0, 1]"));
  EXPECT_FALSE(w->add_histogram("h", at::tensor({1.0, NAN}), 0));
  EXPECT_THAT(std::string(w->last_rejection().message()), HasSubstr("non-finite"));
  EXPECT_FALSE(w->add_audio("a", at::zeros({2, 2, 2}), 0));
  EXPECT_THAT(std::string(w->last_rejection().message()), HasSubstr("[frames, channels]"));
  EXPECT_EQ(w->counters().records_rejected, 7u);
  // Rejections are not I/O errors: the writer keeps working.
  EXPECT_TRUE(w->status().ok());
  EXPECT_TRUE(w->add_scalar("ok", 1, 1));
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(ReadRun(dir.path()).size(), 2u);
}

// ---- faults -----------------------------------------------------------------------

TEST(Faults, UncreatableDirectoryGivesAClearError) {
  TempDir dir;
  WriteFile(dir.Sub("afile"), "x");
  const std::string bad = dir.Sub("afile/run1");
  tb::SummaryWriterOptions opt;
  opt.log_dir = bad;
  absl::StatusOr<std::unique_ptr<tb::SummaryWriter>> w = tb::SummaryWriter::Create(opt);
  ASSERT_FALSE(w.ok());
  const std::string msg(w.status().message());
  EXPECT_THAT(msg, HasSubstr("cannot create TensorBoard log directory '" + bad + "'"));
  EXPECT_THAT(msg, HasSubstr("Not a directory"));
  EXPECT_THAT(msg, HasSubstr("Choose a log_dir"));

  opt.log_dir = "/proc/trainbus_cannot_exist/run";
  w = tb::SummaryWriter::Create(opt);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("/proc/trainbus_cannot_exist"));
}

// Runs `body` in a forked child; returns its exit status. The child must only
// use the writer (no ATen ops: the parent's thread pools do not survive fork).
int RunInChild(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// Waits up to 30 s for child `pid` (a hang fails the test, it does not stall
// it); false, and the child killed, if it did not end by then.
bool ExitedWithin30s(pid_t pid, int* status) {
  for (int i = 0; i < 3000; ++i) {
    if (::waitpid(pid, status, WNOHANG) != 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, status, 0);
  return false;
}

// A writer a forked child inherits closes there at once and writes nothing:
// its thread is the parent's. The parent's file goes on, each record once.
TEST(Faults, AWriterInheritedByAForkedChildClosesThereWithoutWaitingOrWriting) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_scalar("x", 1, 1));
  ASSERT_TRUE(w->flush().ok());
  ASSERT_TRUE(w->add_scalar("x", 2, 2));  // queued: the parent's thread writes it, not the child
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const bool closed = w->close().ok();
    w.reset();
    ::_exit(closed ? 0 : 1);
  }
  int status = 0;
  ASSERT_TRUE(ExitedWithin30s(pid, &status)) << "the child hung closing its copy of the writer";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(w->add_scalar("x", 3, 3));
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 4u);  // file_version, then each record once
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(ev[i].step(), i);
}

// A deferred job runs on the writer's own thread: flush() from there would
// wait for itself. It says so instead of hanging the writer.
TEST(Writer, FlushFromADeferredJobFailsInsteadOfWaitingForItself) {
  TempDir dir;
  auto w = tb::EventFileWriter::Open(dir.path(), tb::EventFileWriterOptions{});
  ASSERT_TRUE(w.ok()) << w.status();
  absl::Status inner;
  ASSERT_TRUE((*w)->RunDeferred([&] { inner = (*w)->Flush(); }, 0));
  ASSERT_TRUE((*w)->Flush().ok());  // the job ran before this returned
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition) << inner;
  EXPECT_THAT(std::string(inner.message()), HasSubstr("writer's own thread"));
  EXPECT_TRUE((*w)->Close().ok());
}

// In a forked child the inherited writer refuses writes (false), rather than
// queueing them for a thread the child does not have: with a small queue and
// kWait, the child's 17th write used to wait for room forever. Its flush,
// status and close return at once; the parent's file has only its records.
TEST(Faults, AForkedChildsWritesAreRefusedNotQueuedForAThreadItDoesNotHave) {
  TempDir dir;
  tb::SummaryWriterOptions opt;
  opt.max_queue = 16;
  opt.on_full = tb::QueueFullPolicy::kWait;
  auto w = MakeWriter(dir.path(), opt);
  ASSERT_TRUE(w->add_scalar("x", 1, 1));
  ASSERT_TRUE(w->flush().ok());
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int accepted = 0;
    for (int i = 0; i < 100; ++i) accepted += w->add_scalar("child", i, i) ? 1 : 0;
    const bool rest_ok = w->request_flush().ok() && w->flush().ok() && w->status().ok() &&
                         w->close().ok();
    w.reset();
    ::_exit(accepted == 0 && rest_ok ? 0 : 1 + std::min(accepted, 100));
  }
  int status = 0;
  ASSERT_TRUE(ExitedWithin30s(pid, &status)) << "the child hung writing to its copy of the writer";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1 + the number of writes the child's copy accepted";
  for (int i = 2; i <= 40; ++i) ASSERT_TRUE(w->add_scalar("x", i, i));  // the parent's goes on
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 41u);  // file_version, then the parent's 40 records once each
  for (int i = 1; i <= 40; ++i) EXPECT_EQ(ev[i].step(), i);
}

TEST(Faults, DiskFullIsStickyAndNamesFileAndLostRecords) {
  TempDir dir;
  const std::string report = dir.Sub("report.txt");
  const std::string run = dir.Sub("run");
  const int status = RunInChild([&]() -> int {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {64 * 1024, 64 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 10;
    tb::SummaryWriterOptions opt;
    opt.log_dir = run;
    auto w = tb::SummaryWriter::Create(opt);
    if (!w.ok()) return 11;
    for (int i = 0; i < 100; ++i) (*w)->add_scalar("early", i, i);
    if (!(*w)->flush().ok()) return 12;  // fits in 64 KiB
    for (int i = 0; i < 20000; ++i) (*w)->add_scalar("loss", i, i);
    absl::Status s = (*w)->flush();
    const bool later_refused = !(*w)->add_scalar("after", 1, 1);
    absl::Status again = (*w)->flush();
    absl::Status closed = (*w)->close();
    const tb::WriterCounters c = (*w)->counters();
    std::ofstream out(report);
    out << s.ok() << "\n"
        << again.ok() << "\n"
        << closed.ok() << "\n"
        << later_refused << "\n"
        << c.records_written << "\n"
        << c.records_lost << "\n"
        << c.bytes_written << "\n"
        << (*w)->file_path() << "\n"
        << s.message() << "\n";
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::ifstream in(report);
  int flush_ok, again_ok, close_ok, refused;
  uint64_t written, lost, bytes;
  std::string path, message;
  in >> flush_ok >> again_ok >> close_ok >> refused >> written >> lost >> bytes;
  std::getline(in, path);
  std::getline(in, path);
  std::getline(in, message);
  EXPECT_FALSE(flush_ok);
  EXPECT_FALSE(again_ok);
  EXPECT_FALSE(close_ok);
  EXPECT_TRUE(refused);
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(written + lost, 1u + 100u + 20000u + 1u);  // "after" counts as lost too
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("File too large"));
  EXPECT_THAT(message, HasSubstr("record(s) lost"));
  EXPECT_THAT(message, HasSubstr("ulimit -f"));
  // Everything reported written reads back; the file ends on a record boundary.
  auto c = tb::ReadEventFile(path);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->end, tb::EventFileReader::State::kEnd) << c->problem;
  EXPECT_EQ(c->events.size(), written);
  EXPECT_EQ(bytes, std::filesystem::file_size(path));  // the cut partial record is not counted
  for (size_t i = 1; i < c->events.size(); ++i) {
    const int64_t want = i <= 100 ? static_cast<int64_t>(i - 1) : static_cast<int64_t>(i - 101);
    ASSERT_EQ(c->events[i].step(), want);
  }
}

TEST(Faults, SigkillKeepsEverythingFlushed) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    tb::SummaryWriterOptions opt;
    opt.log_dir = run;
    auto w = tb::SummaryWriter::Create(opt);
    if (!w.ok()) ::_exit(1);
    for (int i = 0; i < 1000; ++i) (*w)->add_scalar("x", i, i);
    if (!(*w)->flush().ok()) ::_exit(2);
    for (int i = 1000; i < 1500; ++i) (*w)->add_scalar("x", i, i);  // not flushed
    char c = 'k';
    (void)!::write(pipefd[1], &c, 1);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  char c;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ::close(pipefd[0]);
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const auto files = EventFiles(run);
  ASSERT_EQ(files.size(), 1u);
  auto contents = tb::ReadEventFile(files[0]);
  ASSERT_TRUE(contents.ok());
  EXPECT_NE(contents->end, tb::EventFileReader::State::kCorrupt) << contents->problem;
  ASSERT_GE(contents->events.size(), 1001u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(contents->events[i + 1].step(), i);
}

TEST(Faults, LeakedWriterIsFlushedAtExit) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  const int status = RunInChild([&]() -> int {
    tb::SummaryWriterOptions opt;
    opt.log_dir = run;
    auto w = tb::SummaryWriter::Create(opt);
    if (!w.ok()) return 1;
    tb::SummaryWriter* leaked = w->release();
    for (int i = 0; i < 300; ++i) leaked->add_scalar("x", i, i);
    std::exit(0);  // runs atexit handlers, never destroys the writer
  });
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  const auto ev = ReadRun(run);
  EXPECT_EQ(ev.size(), 301u);
}

std::string WriteSmallRun(const std::string& dir, int n) {
  auto w = MakeWriter(dir);
  for (int i = 0; i < n; ++i) w->add_scalar("x", i, i);
  EXPECT_TRUE(w->close().ok());
  return w->file_path();
}

TEST(Reader, TruncatedTailIsToleratedAndReported) {
  TempDir dir;
  const std::string path = WriteSmallRun(dir.path(), 10);
  const std::string data = ReadFile(path);
  const size_t last_start = data.size() - tb::ScalarEventSize(1.0, 9, "x") - 16;
  WriteFile(path, data.substr(0, data.size() - 5));
  auto c = tb::ReadEventFile(path);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->end, tb::EventFileReader::State::kTruncated);
  EXPECT_EQ(c->events.size(), 10u);  // file_version + 9 whole scalars
  EXPECT_EQ(c->problem_offset, last_start);
  EXPECT_THAT(c->problem, HasSubstr(path));
  EXPECT_THAT(c->problem, HasSubstr("truncated"));
  // Header cut short too.
  WriteFile(path, data.substr(0, last_start + 7));
  c = tb::ReadEventFile(path);
  EXPECT_EQ(c->end, tb::EventFileReader::State::kTruncated);
  EXPECT_EQ(c->problem_offset, last_start);
}

TEST(Reader, CorruptionIsReportedWithOffset) {
  TempDir dir;
  const std::string path = WriteSmallRun(dir.path(), 10);
  const std::string data = ReadFile(path);
  const size_t first = data.size() - 10 * (tb::ScalarEventSize(1.0, 9, "x") + 16);
  const size_t rec = tb::ScalarEventSize(1.0, 9, "x") + 16;
  std::string bad = data;
  bad[first + 3 * rec + 20] ^= 0x40;  // data byte of the 4th scalar
  WriteFile(path, bad);
  auto c = tb::ReadEventFile(path);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->end, tb::EventFileReader::State::kCorrupt);
  EXPECT_EQ(c->problem_offset, first + 3 * rec);
  EXPECT_THAT(c->problem, HasSubstr("bad data checksum"));
  EXPECT_EQ(c->events.size(), 4u);
  bad = data;
  bad[first + 2 * rec + 1] ^= 0x01;  // length of the 3rd scalar
  WriteFile(path, bad);
  c = tb::ReadEventFile(path);
  EXPECT_EQ(c->end, tb::EventFileReader::State::kCorrupt);
  EXPECT_EQ(c->problem_offset, first + 2 * rec);
  EXPECT_THAT(c->problem, HasSubstr("bad length checksum"));
}

// ---- concurrency and queue policies ----------------------------------------------------

TEST(Concurrency, EightThreadsLoseAndDuplicateNothing) {
  TempDir dir;
  tb::SummaryWriterOptions opt;
  opt.max_queue = 1024;  // small: producers will find it full and wait
  auto w = MakeWriter(dir.path(), opt);
  constexpr int kThreads = 8, kPerThread = 25000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string tag = "thread" + std::to_string(t);
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(w->add_scalar(tag, static_cast<double>(i), i));
        if (i % 5000 == 0) {
          ASSERT_TRUE(w->flush().ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(w->close().ok());
  const tb::WriterCounters c = w->counters();
  EXPECT_EQ(c.records_written, 1u + kThreads * kPerThread);
  EXPECT_EQ(c.records_lost, 0u);
  EXPECT_EQ(c.records_dropped, 0u);
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 1u + kThreads * kPerThread);
  std::vector<std::vector<int>> seen(kThreads, std::vector<int>(kPerThread, 0));
  std::vector<int64_t> last(kThreads, -1);
  for (size_t k = 1; k < ev.size(); ++k) {
    const auto& v = ev[k].summary().value(0);
    const int t = std::stoi(v.tag().substr(6));
    const int64_t i = ev[k].step();
    ASSERT_EQ(v.simple_value(), static_cast<float>(i));
    ++seen[t][i];
    EXPECT_GT(i, last[t]);  // each thread's records stay in order
    last[t] = i;
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], 1) << t << "," << i;
  }
}

// A producer facing a full queue sleeps until the writer thread has made
// room: during a 300 ms stall of the writer it makes a handful of context
// switches, not thousands of polls, and loses nothing.
TEST(Concurrency, AProducerFacingAFullQueueBlocksInsteadOfPolling) {
  TempDir dir;
  tb::EventFileWriterOptions opt;
  opt.max_queue = 16;
  auto w = tb::EventFileWriter::Open(dir.path(), opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->WriteDeferredEvent(
      [] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the writer stalls
        tb::proto::Event e;
        e.set_step(0);
        return e.SerializeAsString();
      },
      16));
  struct rusage before, after;
  ASSERT_EQ(::getrusage(RUSAGE_THREAD, &before), 0);
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE((*w)->WriteScalar("x", 1.0f, i, 1.0));
  ASSERT_EQ(::getrusage(RUSAGE_THREAD, &after), 0);
  ASSERT_TRUE((*w)->Close().ok());
  const tb::WriterCounters c = (*w)->counters();
  EXPECT_EQ(c.records_written, 102u);  // file_version, the stalled record, 100 scalars
  EXPECT_GE(c.queue_full_waits, 1u);
  // Blocked, then woken per drained batch: well under one switch per ms.
  EXPECT_LT(after.ru_nvcsw - before.ru_nvcsw, 60) << "voluntary context switches while blocked";
}

// True where this process can give a writer's first thread a lane (the
// membarrier registration at load time worked); the lane tests need it.
bool LaneAvailable() {
  tb::internal::OwnerLane probe(1024);
  return probe.TryClaim();
}

// A Close() from another thread waits for a push in the middle of its
// encoding and keeps it; pushes after the close are refused.
TEST(OwnerLane, ACloseWaitsForThePushInProgressAndKeepsIt) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  tb::internal::OwnerLane lane(4096);
  std::atomic<bool> encoding{false}, finish{false}, close_returned{false};
  uint64_t closed_at = 0;
  bool mark = false;
  std::thread owner([&] {
    ASSERT_TRUE(lane.TryClaim());
    const auto r = lane.TryPush(
        [&](char*) {
          encoding.store(true);
          while (!finish.load()) std::this_thread::yield();
          return size_t{40};
        },
        &mark);
    EXPECT_EQ(r, tb::internal::OwnerLane::PushResult::kOk);
    EXPECT_EQ(lane.TryPush([](char*) { return size_t{8}; }, &mark),
              tb::internal::OwnerLane::PushResult::kClosed);
  });
  while (!encoding.load()) std::this_thread::yield();
  std::thread closer([&] {
    closed_at = lane.Close();
    close_returned.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(close_returned.load()) << "Close() returned while a push was being encoded";
  finish.store(true);
  owner.join();
  closer.join();
  EXPECT_EQ(closed_at, 40u) << "the push in progress is inside the closed lane";
  EXPECT_TRUE(mark) << "the first entry wakes the writer thread";
}

// Only one thread owns a lane; the claim is for good.
TEST(OwnerLane, OneOwnerOnly) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  tb::internal::OwnerLane lane(4096);
  ASSERT_TRUE(lane.TryClaim());
  EXPECT_TRUE(lane.OwnedByCaller());
  bool other_claimed = true, other_owns = true;
  std::thread([&] {
    other_claimed = lane.TryClaim();
    other_owns = lane.OwnedByCaller();
  }).join();
  EXPECT_FALSE(other_claimed);
  EXPECT_FALSE(other_owns);
}

// The first thread that logs owns the writer's lane (owner_lane.h); its
// records of every kind are packed there, lap after lap of a small lane,
// and come out in call order with the other threads' records (through the
// shared ring) each in theirs.
TEST(Concurrency, TheOwnersLaneKeepsEveryKindInOrderLapAfterLap) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  TempDir dir;
  tb::EventFileWriterOptions opt;
  opt.max_queue = 16;  // a 1,024-byte lane: ~30 scalars a lap
  auto w = tb::EventFileWriter::Open(dir.path(), opt);
  ASSERT_TRUE(w.ok()) << w.status();
  constexpr int kRecords = 3000;
  std::atomic<bool> owner_started{false};
  std::thread other([&] {
    while (!owner_started.load()) std::this_thread::yield();
    for (int i = 0; i < kRecords; ++i) ASSERT_TRUE((*w)->WriteScalar("other", 1.0f, i, 2.0));
  });
  std::mt19937 rng(7);
  for (int i = 0; i < kRecords; ++i) {
    switch (rng() % 4) {
      case 0:  // a scalar with a tag of 1 to 30 bytes, packed into the lane
        ASSERT_TRUE((*w)->WriteScalar(std::string(1 + rng() % 30, 'a'), 0.5f, i, 1.0));
        break;
      case 1: {  // a tag too long to pack: a serialized Event, referenced
        ASSERT_TRUE((*w)->WriteScalar(std::string(31 + rng() % 40, 'b'), 0.5f, i, 1.0));
        break;
      }
      case 2: {
        tb::proto::Event e;
        e.set_step(i);
        e.set_file_version(std::string(rng() % 200, 'c'));
        ASSERT_TRUE((*w)->WriteEvent(e.SerializeAsString()));
        break;
      }
      default:
        ASSERT_TRUE((*w)->WriteDeferredEvent(
            [i] {
              tb::proto::Event e;
              e.set_step(i);
              return e.SerializeAsString();
            },
            8));
    }
    if (i == 10) owner_started.store(true);
  }
  other.join();
  ASSERT_TRUE((*w)->Close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 1u + 2 * kRecords);
  int64_t owner_next = 0, other_next = 0;
  for (size_t k = 1; k < ev.size(); ++k) {
    const bool from_other = ev[k].has_summary() && ev[k].summary().value(0).tag() == "other";
    int64_t& next = from_other ? other_next : owner_next;
    ASSERT_EQ(ev[k].step(), next) << "record " << k << (from_other ? " (other)" : " (owner)");
    ++next;
  }
  EXPECT_EQ(owner_next, kRecords);
  EXPECT_EQ(other_next, kRecords);
}

// Close() from another thread while the lane's owner keeps adding: every
// record whose add returned true is in the file, once, and every add after
// the close returns false. Many rounds, closing at varied moments (also
// before or during the owner's first push, which claims the lane).
TEST(Concurrency, ACloseFromAnotherThreadKeepsEveryRecordTheOwnerWasToldWasAccepted) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    TempDir dir;
    auto w = tb::EventFileWriter::Open(dir.path(), {});
    ASSERT_TRUE(w.ok()) << w.status();
    std::atomic<int64_t> progress{0};
    int64_t accepted = 0;
    std::thread owner([&] {
      while ((*w)->WriteScalar("x", 1.0f, accepted, 1.0)) {
        ++accepted;
        progress.store(accepted, std::memory_order_relaxed);
      }
    });
    const int64_t close_after = rng() % 2000;
    while (progress.load(std::memory_order_relaxed) < close_after) std::this_thread::yield();
    ASSERT_TRUE((*w)->Close().ok());
    owner.join();
    EXPECT_FALSE((*w)->WriteScalar("x", 1.0f, accepted, 1.0));
    const auto ev = ReadRun(dir.path());
    ASSERT_EQ(ev.size(), 1u + accepted) << "round " << round;
    for (int64_t i = 0; i < accepted; ++i) ASSERT_EQ(ev[1 + i].step(), i) << "round " << round;
  }
}

// flush() from a thread that does not own the lane covers what the owner
// added before it: the lane's records are in the file when it returns.
TEST(Concurrency, AFlushFromAnotherThreadCoversTheOwnersLane) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  TempDir dir;
  auto w = tb::EventFileWriter::Open(dir.path(), {});
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*w)->WriteScalar("owner", 1.0f, i, 1.0));
  std::thread([&] { ASSERT_TRUE((*w)->Flush().ok()); }).join();
  const auto read = tb::ReadEventFile((*w)->path());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->events.size(), 101u);
  ASSERT_TRUE((*w)->Close().ok());
}

// A close while the lane's owner waits for room (its lane full behind a
// stalled writer thread) wakes it: the waiting add returns false, and every
// add that returned true is written.
TEST(Concurrency, ACloseWakesTheOwnerWaitingOnAFullLane) {
  if (!LaneAvailable()) GTEST_SKIP() << "membarrier unavailable: writers use the shared ring";
  TempDir dir;
  tb::EventFileWriterOptions opt;
  opt.max_queue = 16;
  auto w = tb::EventFileWriter::Open(dir.path(), opt);
  ASSERT_TRUE(w.ok()) << w.status();
  std::atomic<bool> stalled{false};
  int64_t accepted = 0;
  std::thread owner([&] {
    ASSERT_TRUE((*w)->WriteDeferredEvent(
        [&] {
          stalled.store(true);
          std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the writer stalls
          return tb::proto::Event().SerializeAsString();
        },
        16));
    while ((*w)->WriteScalar("x", 1.0f, accepted + 1, 1.0)) ++accepted;
  });
  while (!stalled.load()) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the owner fills the lane
  ASSERT_TRUE((*w)->Close().ok());
  owner.join();
  EXPECT_GE((*w)->counters().queue_full_waits, 1u);
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 2u + accepted);  // file_version, the stalled record, the scalars
  for (int64_t i = 1; i <= accepted; ++i) ASSERT_EQ(ev[1 + i].step(), i);
}

TEST(Concurrency, DropPolicyCountsEveryDrop) {
  TempDir dir;
  tb::SummaryWriterOptions opt;
  opt.max_queue = 16;
  opt.on_full = tb::SummaryWriterOptions::QueueFullPolicy::kDrop;
  auto w = MakeWriter(dir.path(), opt);
  uint64_t accepted = 0;
  for (int i = 0; i < 200000; ++i) accepted += w->add_scalar("x", i, i);
  ASSERT_TRUE(w->close().ok());
  const tb::WriterCounters c = w->counters();
  EXPECT_EQ(accepted + c.records_dropped, 200000u);
  EXPECT_EQ(c.records_written, 1u + accepted);
  EXPECT_EQ(ReadRun(dir.path()).size(), 1u + accepted);
}

TEST(Writer, LargeRecordsBypassTheBufferInOrder) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  std::vector<double> big(200000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i);
  w->add_scalar("before", 1, 1);
  ASSERT_TRUE(w->add_text("big", std::string(300000, 'z'), 2));
  w->add_scalar("after", 2, 3);
  ASSERT_TRUE(w->close().ok());
  const auto vals = Values(ReadRun(dir.path()));
  ASSERT_EQ(vals.size(), 3u);
  EXPECT_EQ(vals[0].second.tag(), "before");
  EXPECT_EQ(vals[1].second.tensor().string_val(0).size(), 300000u);
  EXPECT_EQ(vals[2].second.tag(), "after");
}

// On ext4 the writer reserves the file's blocks ahead of its writes
// (fallocate, keeping the size): readers see exactly the bytes written, and
// every flush and the close give the reserve back. Elsewhere (or where
// fallocate fails, ext2/3) nothing is reserved and only the give-back
// checks run. A large record is written by itself, reserving 1 MiB past it:
// a known state to look at, with no flush in between.
TEST(Writer, ReservesBlocksAheadPastAMegabyteSinceTheFlushAndGivesThemBackAtEveryFlush) {
  TempDir dir;
  struct statfs fs;
  ASSERT_EQ(::statfs(dir.path().c_str(), &fs), 0);
  bool reserves = false;
  if (fs.f_type == EXT4_SUPER_MAGIC) {
    const std::string probe = dir.path() + "/probe";
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    reserves = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 16) == 0;
    ::close(fd);
    ::unlink(probe.c_str());
  }
  auto w = MakeWriter(dir.path());
  auto allocated_past_end = [&] {
    struct stat st;
    EXPECT_EQ(::stat(w->file_path().c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), w->counters().bytes_written);
    return static_cast<int64_t>(st.st_blocks) * 512 - (st.st_size + 4095) / 4096 * 4096;
  };
  auto wait_for_records = [&](uint64_t n) {
    for (int i = 0; i < 10000 && w->counters().records_written < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(w->counters().records_written, n);
  };
  // Under a megabyte written since the flush (here, since the file's start):
  // nothing reserved, since giving a reserve back costs more than it saves.
  ASSERT_TRUE(w->add_text("big", std::string(300000, 'z'), 1));
  wait_for_records(2);  // the file version, then the text
  EXPECT_LE(allocated_past_end(), 64 << 10);
  // Past a megabyte: reserved ahead.
  ASSERT_TRUE(w->add_text("bigger", std::string(1100000, 'y'), 2));  // wakes the writer
  wait_for_records(3);
  if (reserves) {
    EXPECT_GE(allocated_past_end(), 1 << 19);
  }

  ASSERT_TRUE(w->flush().ok());
  EXPECT_LE(allocated_past_end(), 64 << 10);
  for (int i = 0; i < 40000; ++i) ASSERT_TRUE(w->add_scalar("loss/train", i * 0.5, i));
  ASSERT_TRUE(w->close().ok());
  EXPECT_LE(allocated_past_end(), 64 << 10);
  EXPECT_EQ(Values(ReadRun(dir.path())).size(), 40002u);
}

// ---- inspect -----------------------------------------------------------------------

TEST(Inspect, ReportsRunsTagsAndCorruption) {
  TempDir dir;
  {
    auto w = MakeWriter(dir.Sub("exp/train"));
    for (int i = 0; i < 20; ++i) w->add_scalar("loss", 1.0 / (i + 1), i + 5);
    w->add_histogram("w", std::vector<double>{1, 2, 3}, 3);
    w->add_scalars("acc", {{"a", 0.5}}, 7);
    ASSERT_TRUE(w->close().ok());
  }
  absl::StatusOr<tb::InspectReport> r = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->runs.size(), 2u);
  EXPECT_EQ(r->runs[0].run, "exp/train");
  EXPECT_EQ(r->runs[1].run, "exp/train/acc_a");
  const auto& tags = r->runs[0].tags;
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].tag, "loss");
  EXPECT_EQ(tags[0].kind, "scalar");
  EXPECT_EQ(tags[0].count, 20);
  EXPECT_EQ(tags[0].first_step, 5);
  EXPECT_EQ(tags[0].last_step, 24);
  ASSERT_TRUE(tags[0].last_value.has_value());
  EXPECT_FLOAT_EQ(static_cast<float>(*tags[0].last_value), 1.0f / 20);
  EXPECT_EQ(tags[1].kind, "histogram");
  EXPECT_FALSE(r->corrupt());
  EXPECT_EQ(tb::InspectExitCode(*r), 0);
  std::ostringstream human;
  tb::PrintInspectReport(*r, false, human);
  EXPECT_THAT(human.str(), HasSubstr("loss"));
  EXPECT_THAT(human.str(), HasSubstr("no corruption"));

  // Corrupt one byte in the middle of the train run's file.
  const std::string file = r->runs[0].files[0];
  std::string data = ReadFile(file);
  data[data.size() / 2] ^= 0x20;
  WriteFile(file, data);
  r = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->corrupt());
  EXPECT_NE(tb::InspectExitCode(*r), 0);
  ASSERT_EQ(r->runs[0].problems.size(), 1u);
  const tb::InspectProblem& p = r->runs[0].problems[0];
  EXPECT_EQ(p.kind, tb::InspectProblem::Kind::kCorrupt);
  EXPECT_EQ(p.file, file);
  EXPECT_LE(p.offset, data.size() / 2);
  EXPECT_GT(p.offset, 0u);
  std::ostringstream json;
  tb::PrintInspectReport(*r, true, json);
  const std::string j = json.str();
  EXPECT_EQ(j.front(), '{');
  EXPECT_THAT(j, HasSubstr("\"corrupt\": true"));
  EXPECT_THAT(j, HasSubstr("\"kind\": \"corrupt\""));
  EXPECT_THAT(j, HasSubstr("\"offset\": " + std::to_string(p.offset)));
  EXPECT_THAT(j, HasSubstr("\"run\": \"exp/train/acc_a\""));
  EXPECT_THAT(j, HasSubstr("\"last_value\": 0.5"));
  // Balanced braces and brackets (a cheap structural check).
  EXPECT_EQ(std::count(j.begin(), j.end(), '{'), std::count(j.begin(), j.end(), '}'));
  EXPECT_EQ(std::count(j.begin(), j.end(), '['), std::count(j.begin(), j.end(), ']'));

  EXPECT_EQ(tb::InspectLogDir(dir.Sub("missing")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace

// ---- sessions, rewind and what TensorBoard's loaders show ------------------------

namespace rewind_test {

// Writes one session of a run: START at `from`, train/loss for steps
// [from, to), hparams start and end records, into its own event file.
void WriteSession(const std::string& dir, int64_t from, int64_t to, double epochs) {
  tb::SummaryWriterOptions opt;
  opt.log_dir = dir;
  opt.purge_step = from;
  opt.filename_suffix = absl::StrCat(".s", from);  // files sort in session order
  auto w = tb::SummaryWriter::Create(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->add_session_start({{"epochs", epochs}, {"opt", std::string("sgd")}}, from));
  for (int64_t s = from; s < to; ++s) (*w)->add_scalar("train/loss", 1.0 / (s + 1), s);
  ASSERT_TRUE((*w)->add_session_end(tb::HParamsSessionStatus::kSuccess, to - 1));
  ASSERT_TRUE((*w)->close().ok());
}

std::map<std::string, tb::InspectTag> Tags(const std::string& root) {
  auto report = tb::InspectLogDir(root);
  EXPECT_TRUE(report.ok()) << report.status();
  std::map<std::string, tb::InspectTag> out;
  if (!report.ok() || report->runs.empty()) return out;
  for (const auto& t : report->runs[0].tags) out[t.tag] = t;
  return out;
}

}  // namespace rewind_test

TEST(Sessions, SessionRecordsCarryValuesAndStatusWithoutExperimentOrMetrics) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_session_start({{"lr", 0.1}, {"nesterov", true}, {"opt", std::string("sgd")}}, 3));
  ASSERT_TRUE(w->add_session_end(tb::HParamsSessionStatus::kFailure, 9));
  EXPECT_FALSE(w->add_session_start({}, 3));  // nothing to show
  EXPECT_THAT(std::string(w->last_rejection().message()), HasSubstr("no hyperparameters given"));
  ASSERT_TRUE(w->close().ok());
  const auto ev = ReadRun(dir.path());
  ASSERT_EQ(ev.size(), 3u);  // file version, start, end: no experiment, no scalars
  tb::proto::hparams::HParamsPluginData start, end;
  ASSERT_TRUE(start.ParseFromString(ev[1].summary().value(0).metadata().plugin_data().content()));
  EXPECT_EQ(ev[1].step(), 3);
  EXPECT_EQ(ev[1].summary().value(0).tag(), "_hparams_/session_start_info");
  EXPECT_DOUBLE_EQ(start.session_start_info().hparams().at("lr").number_value(), 0.1);
  EXPECT_TRUE(start.session_start_info().hparams().at("nesterov").bool_value());
  EXPECT_EQ(start.session_start_info().hparams().at("opt").string_value(), "sgd");
  ASSERT_TRUE(end.ParseFromString(ev[2].summary().value(0).metadata().plugin_data().content()));
  EXPECT_EQ(ev[2].step(), 9);
  EXPECT_EQ(end.session_end_info().status(), tb::proto::hparams::STATUS_FAILURE);
}

// Without a rewind, the two loaders disagree about a resumed run, and inspect
// says so: the Rust loader replaces steps >= a repeated one, the Python
// loader keeps both sessions' points unless a second START purges them.
TEST(Inspect, ReplaysBothLoadersOnAResumedRun) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  rewind_test::WriteSession(run, 0, 10, 1);
  rewind_test::WriteSession(run, 6, 12, 2);
  auto tags = rewind_test::Tags(dir.path());
  // Both sessions wrote a START: the second one purges steps >= 6 in the
  // Python loader, and the Rust loader evicts them by step.
  EXPECT_EQ(tags["train/loss"].written, 16);
  EXPECT_EQ(tags["train/loss"].count, 12);
  EXPECT_EQ(tags["train/loss"].count_legacy, 12);
  EXPECT_EQ(tags["train/loss"].duplicate_steps, 0);
  EXPECT_EQ(tags["train/loss"].last_step, 11);
}

TEST(Inspect, CountsDuplicateAndBackwardStepsThePythonLoaderShows) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  {
    // A first session without a START of its own (as PyTorch writes a fresh
    // run): the Python loader ignores the resumed session's START.
    auto w = MakeWriter(run);
    for (int64_t s = 0; s < 10; ++s) w->add_scalar("loss", 1, s);
    w->add_scalar("loss", 2, 9);  // written twice
    ASSERT_TRUE(w->close().ok());
  }
  {
    tb::SummaryWriterOptions opt;
    opt.log_dir = run;
    opt.purge_step = 6;
    opt.filename_suffix = ".z";
    auto w = tb::SummaryWriter::Create(opt);
    ASSERT_TRUE(w.ok());
    for (int64_t s = 6; s < 12; ++s) (*w)->add_scalar("loss", 3, s);
    ASSERT_TRUE((*w)->close().ok());
  }
  auto tags = rewind_test::Tags(dir.path());
  EXPECT_EQ(tags["loss"].written, 17);
  EXPECT_EQ(tags["loss"].count, 12);             // one per step 0..11
  EXPECT_EQ(tags["loss"].count_legacy, 17);      // nothing purged
  EXPECT_EQ(tags["loss"].duplicate_steps, 5);    // 9 twice in session 1, then 6..9 again
  EXPECT_EQ(tags["loss"].backward_steps, 1);     // 9 -> 6
  EXPECT_FLOAT_EQ(*tags["loss"].last_value, 3);
  std::ostringstream text;
  auto report = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(report.ok());
  tb::PrintInspectReport(*report, false, text);
  EXPECT_THAT(text.str(), HasSubstr("WARNING loss: TensorBoard's Python loader shows 17 points"));
  EXPECT_THAT(text.str(), HasSubstr("1 tag(s) shown differently by TensorBoard's two loaders"));
  std::ostringstream json;
  tb::PrintInspectReport(*report, true, json);
  EXPECT_THAT(json.str(), HasSubstr("\"count\": 12, \"count_legacy\": 17, \"written\": 17, "
                                    "\"duplicate_steps\": 5, \"backward_steps\": 1"));
}

TEST(Rewind, CutsTheAbandonedTailAndEarlierHParamsFromEveryFile) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  rewind_test::WriteSession(run, 0, 10, 1);
  {
    // A sub-run (add_scalars) of the same run is rewound too.
    auto w = MakeWriter(run);
    w->add_scalars("loss", {{"val", 1.0}}, 2);
    w->add_scalars("loss", {{"val", 0.5}}, 8);
    ASSERT_TRUE(w->close().ok());
  }
  const std::vector<std::string> before = EventFiles(run);
  auto r = tb::RewindRun(run, 6);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files_rewritten, 2);  // the session's file and the sub-run's
  EXPECT_TRUE(r->skipped.empty());
  EXPECT_EQ(EventFiles(run), before);  // same names, no temporary left behind
  for (const auto& e : fs::directory_iterator(run)) {
    EXPECT_EQ(e.path().filename().string().find(".trainbus-rewind"), std::string::npos);
  }
  rewind_test::WriteSession(run, 6, 12, 2);
  auto tags = rewind_test::Tags(dir.path());
  EXPECT_EQ(tags["train/loss"].written, 12);  // nothing on disk twice
  EXPECT_EQ(tags["train/loss"].count, 12);
  EXPECT_EQ(tags["train/loss"].count_legacy, 12);
  EXPECT_EQ(tags["_hparams_/session_start_info"].written, 1);
  EXPECT_EQ(tags["_hparams_/session_start_info"].first_step, 6);
  auto sub = tb::InspectLogDir(run + "/loss_val");
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(sub->runs.size(), 1u);
  EXPECT_EQ(sub->runs[0].tags[0].count, 1);  // step 2 stays, step 8 went

  // Nothing to do: no file changes; a missing folder is an empty run.
  auto again = tb::RewindRun(run + "/loss_val", 100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->files_rewritten, 0);
  auto missing = tb::RewindRun(dir.Sub("nothing-here"), 5);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->files_rewritten, 0);
}

TEST(Rewind, DropsACutOffTailAndLeavesACorruptFileAlone) {
  TempDir dir;
  const std::string run = dir.Sub("run");
  rewind_test::WriteSession(run, 0, 10, 1);
  std::string path = EventFiles(run)[0];
  // A killed writer's half record at the end.
  std::ofstream(path, std::ios::binary | std::ios::app) << std::string("\x20\0\0\0\0\0\0\0\x01\x02", 10);
  auto r = tb::RewindRun(run, 100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files_rewritten, 1);
  auto report = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->truncated(), 0);  // the half record is gone
  auto tags = rewind_test::Tags(dir.path());
  EXPECT_EQ(tags["train/loss"].count, 10);  // every whole record stays
  EXPECT_EQ(tags.count("_hparams_/session_start_info"), 0u);
  // Corrupt a record in the middle: the file is reported, not rewritten.
  std::string corrupt = ReadFile(path);
  corrupt[corrupt.size() / 2] ^= 0x5a;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << corrupt;
  r = tb::RewindRun(run, 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files_rewritten, 0);
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_THAT(r->skipped[0], HasSubstr(path));
  EXPECT_EQ(ReadFile(path), corrupt);
}
