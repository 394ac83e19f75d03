// Tests of the writer's Graphs, Projector, video and mesh support: the model
// graph from a real forward pass, the projector's files, animated GIFs
// decoded with giflib, mesh tensors and their metadata, and inspect's view of
// each. The real TensorBoard reads the same kinds in
// tests/tensorboard_compat/test_dashboards.py.
#include <ATen/ATen.h>
#include <gif_lib.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "trainbus/tensorboard/inspect.h"
#include "trainbus/tensorboard/model_graph.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/rewind.h"
#include "trainbus/tensorboard/proto/graph.pb.h"
#include "trainbus/tensorboard/proto/plugins.pb.h"
#include "trainbus/tensorboard/proto/projector.pb.h"
#include "trainbus/tensorboard/summary_writer.h"
#include "trainbus/tensorboard/tensor_summaries.h"
#include "tb_test_helpers.h"
#include "test_util.h"
#include "video_frames.h"

namespace {

using trainbus::test_util::ReadFile;
using trainbus::test_util::TempDir;
using namespace trainbus::tb_test;  // NOLINT: EventFiles, ReadRun, MakeWriter, Values, DecodePng
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace nn = torch::nn;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---- video ------------------------------------------------------------------

struct DecodedGif {
  int width = 0, height = 0;
  std::vector<std::vector<std::array<uint8_t, 3>>> frames;  // RGB per pixel
  std::vector<int> delays;                                   // 1/100 s
  bool loops = false;
};

DecodedGif DecodeGif(const std::string& bytes) {
  struct Reader {
    const std::string* data;
    size_t at = 0;
  } reader{&bytes};
  int error = 0;
  GifFileType* gif = DGifOpen(
      &reader,
      [](GifFileType* g, GifByteType* out, int n) {
        auto* r = static_cast<Reader*>(g->UserData);
        const int take = static_cast<int>(std::min<size_t>(n, r->data->size() - r->at));
        std::memcpy(out, r->data->data() + r->at, take);
        r->at += take;
        return take;
      },
      &error);
  DecodedGif out;
  if (gif == nullptr) return out;
  EXPECT_EQ(DGifSlurp(gif), GIF_OK);
  out.width = gif->SWidth;
  out.height = gif->SHeight;
  for (int i = 0; i < gif->ImageCount; ++i) {
    const SavedImage& img = gif->SavedImages[i];
    const ColorMapObject* map = img.ImageDesc.ColorMap ? img.ImageDesc.ColorMap : gif->SColorMap;
    std::vector<std::array<uint8_t, 3>> px;
    for (int p = 0; p < img.ImageDesc.Width * img.ImageDesc.Height; ++p) {
      const GifColorType c = map->Colors[img.RasterBits[p]];
      px.push_back({c.Red, c.Green, c.Blue});
    }
    out.frames.push_back(std::move(px));
    GraphicsControlBlock gcb;
    out.delays.push_back(DGifSavedExtensionToGCB(gif, i, &gcb) == GIF_OK ? gcb.DelayTime : -1);
    for (int e = 0; e < img.ExtensionBlockCount; ++e) {
      const ExtensionBlock& b = img.ExtensionBlocks[e];
      if (b.Function == APPLICATION_EXT_FUNC_CODE && b.ByteCount == 11 &&
          std::memcmp(b.Bytes, "NETSCAPE2.0", 11) == 0) {
        out.loops = true;
      }
    }
  }
  DGifCloseFile(gif, &error);
  return out;
}

TEST(Video, AddVideoWritesALoopingGifWhoseFramesAreTheInput) {
  TempDir dir;
  // Two videos of 3 frames, 3 channels, 4x5: frame f of video n is one flat
  // colour, so palette quantisation must reproduce it exactly.
  at::Tensor video = at::zeros({2, 3, 3, 4, 5}, at::kByte);
  const uint8_t colours[2][3][3] = {{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}},
                                    {{10, 20, 30}, {200, 100, 50}, {7, 7, 7}}};
  for (int n = 0; n < 2; ++n) {
    for (int f = 0; f < 3; ++f) {
      for (int c = 0; c < 3; ++c) video[n][f][c].fill_(colours[n][f][c]);
    }
  }
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_video("clip", video, 5, /*fps=*/10));
  ASSERT_TRUE(w->close().ok());
  auto values = Values(ReadRun(dir.path()));
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0].first, 5);
  const auto& image = values[0].second.image();
  // Two videos: padded to 2 (a power of two), 1 row of 2.
  EXPECT_EQ(image.height(), 4);
  EXPECT_EQ(image.width(), 10);
  EXPECT_EQ(image.colorspace(), 3);
  ASSERT_EQ(image.encoded_image_string().substr(0, 6), "GIF89a");
  DecodedGif gif = DecodeGif(image.encoded_image_string());
  ASSERT_EQ(gif.frames.size(), 3u);
  EXPECT_EQ(gif.width, 10);
  EXPECT_EQ(gif.height, 4);
  EXPECT_TRUE(gif.loops);
  for (int f = 0; f < 3; ++f) {
    EXPECT_EQ(gif.delays[f], 10) << "10 fps is 10/100 s a frame";
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 10; ++x) {
        const int n = x / 5;
        const auto px = gif.frames[f][y * 10 + x];
        EXPECT_EQ(px[0], colours[n][f][0]) << "frame " << f << " x " << x << " y " << y;
        EXPECT_EQ(px[1], colours[n][f][1]);
        EXPECT_EQ(px[2], colours[n][f][2]);
      }
    }
  }
}

TEST(Video, ThreeVideosArePaddedToFourInOneRowAsPyTorchDoes) {
  at::Tensor video = at::ones({3, 2, 1, 2, 2}, at::kFloat);
  absl::StatusOr<tb::VideoCanvas> canvas = tb::PrepareVideo("v", video, 4.0);
  ASSERT_TRUE(canvas.ok()) << canvas.status();
  EXPECT_EQ(canvas->frames, 2);
  EXPECT_EQ(canvas->height, 2);  // 2^floor((bit_length(3) - 1) / 2) = 1 row
  EXPECT_EQ(canvas->width, 8);   // of 4
  // The fourth (padding) video is black, the others white.
  EXPECT_EQ(canvas->pixels[5], 255);
  EXPECT_EQ(canvas->pixels[6], 0);
  // Eight videos: 2 rows of 4 (bit_length 4 -> 2^1 rows).
  canvas = tb::PrepareVideo("v", at::ones({8, 1, 1, 2, 2}), 4.0);
  ASSERT_TRUE(canvas.ok());
  EXPECT_EQ(canvas->height, 4);
  EXPECT_EQ(canvas->width, 8);
  // A gray video stays exact in the GIF.
  TempDir dir;
  auto w = MakeWriter(dir.path());
  at::Tensor ramp = at::arange(0, 256, at::kFloat).reshape({1, 1, 16, 16}).to(at::kByte);
  ASSERT_TRUE(w->add_video("gray", ramp.unsqueeze(0), 0, 4.0, "NTCHW"));
  ASSERT_TRUE(w->close().ok());
  DecodedGif gif = DecodeGif(Values(ReadRun(dir.path()))[0].second.image().encoded_image_string());
  ASSERT_EQ(gif.frames.size(), 1u);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(gif.frames[0][i][0], i);
  EXPECT_EQ(gif.delays[0], 25);
}

TEST(Video, BadVideosAreRefusedWithClearMessages) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  EXPECT_FALSE(w->add_video("v", at::zeros({3, 1, 4, 4}), 0));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("video 'v': layout NTCHW needs a 5-D tensor, got shape [3, 1, 4, 4]"));
  EXPECT_FALSE(w->add_video("v", at::zeros({1, 3, 2, 4, 4}), 0));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("2 channel(s)"));
  EXPECT_FALSE(w->add_video("v", at::zeros({1, 3, 3, 4, 4}), 0, /*fps=*/0));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("fps must be a positive number, got 0"));
  EXPECT_FALSE(w->add_video("v", at::zeros({1, 3, 3, 4, 4}), 0, 4.0, "NCHW"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("unknown layout \"NCHW\""));
  EXPECT_TRUE(w->add_video("v", at::zeros({3, 3, 4, 4}), 0, 4.0, "TCHW"));
  ASSERT_TRUE(w->close().ok());
}

// ---- mesh -------------------------------------------------------------------

// The tensorboard plugin's inputs/video frames (plugins/tensorboard/
// video_frames.h), scaled with plain loops, must be the bytes LibTorch's ops
// and PrepareVideo give: each frame's first image by its own range, then
// the writer's float-to-byte conversion. Inputs that hit every rule: NaN,
// +-inf, a constant frame, signed zeros, 1/3/4 channels, another dtype, a
// negated view, strides, a storage offset.
at::Tensor ScaledByTensorOps(const at::Tensor& frames) {
  const at::Tensor flat = frames.flatten(1);
  const at::Tensor lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
  const at::Tensor hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
  return (frames - lo) / (hi - lo).clamp_min(1e-12);
}

TEST(VideoFrames, ScaledPixelsAreTheBytesOfLibTorchsOpsAndPrepareVideo) {
  at::manual_seed(5);
  for (const int64_t channels : {1, 3, 4}) {
    SCOPED_TRACE(absl::StrCat(channels, " channel(s)"));
    std::vector<at::Tensor> batches;
    at::Tensor ramp = at::randn({2, channels, 3, 4}) * 3;
    batches.push_back(ramp);
    at::Tensor nan = at::randn({2, channels, 3, 4});
    nan[0][0][1][2] = NAN;
    batches.push_back(nan);
    at::Tensor inf = at::randn({2, channels, 3, 4});
    inf[0][0][0][0] = INFINITY;
    inf[0][channels - 1][2][3] = -INFINITY;
    batches.push_back(inf);
    at::Tensor plus_inf = at::randn({2, channels, 3, 4});
    plus_inf[0][0][0][1] = INFINITY;
    batches.push_back(plus_inf);
    batches.push_back(at::full({2, channels, 3, 4}, 0.25));                // constant
    at::Tensor zeros = at::zeros({2, channels, 3, 4});
    zeros[0][0][0][0] = -0.0;
    zeros[0][0][1][1] = 1.0;
    batches.push_back(zeros);                                             // signed zeros
    batches.push_back(at::randn({2, channels, 3, 4}).to(at::kDouble));   // another dtype
    batches.push_back(at::randn({2, channels, 3, 4})._neg_view());       // a negated view
    batches.push_back(at::randn({2, 3, 4, channels}).permute({0, 3, 1, 2}));  // strided
    batches.push_back(at::randn({5, channels, 3, 4}).slice(0, 2, 4));     // a storage offset

    trainbus::tensorboard_plugin::VideoFrames frames(static_cast<int64_t>(batches.size()));
    std::vector<at::Tensor> firsts;
    for (const at::Tensor& b : batches) {
      ASSERT_TRUE(frames.Add(b));
      firsts.push_back(b[0].to(at::kFloat).clone());
    }
    EXPECT_TRUE(frames.full());
    EXPECT_FALSE(frames.Add(batches[0]));  // full

    auto want = tb::PrepareVideo("v", ScaledByTensorOps(at::stack(firsts)).unsqueeze(0), 4.0,
                                 "NTCHW");
    ASSERT_TRUE(want.ok()) << want.status();
    const std::vector<uint8_t> got = frames.ScaledPixels();
    EXPECT_EQ(got, want->pixels);
    const tb::VideoPixels view = frames.View(got);
    EXPECT_EQ(view.frames, want->frames);
    EXPECT_EQ(view.height, want->height);
    EXPECT_EQ(view.width, want->width);
    EXPECT_EQ(view.channels, want->channels);
  }
}

TEST(VideoFrames, AnotherImageSizeOrAnEmptyBatchIsRefused) {
  trainbus::tensorboard_plugin::VideoFrames frames(4);
  EXPECT_FALSE(frames.Add(at::zeros({0, 1, 3, 4})));  // no images
  EXPECT_FALSE(frames.Add(at::zeros({2, 1, 0, 4})));  // no pixels
  EXPECT_FALSE(frames.Add(at::zeros({1, 3, 4})));     // not a batch
  EXPECT_EQ(frames.count(), 0);
  ASSERT_TRUE(frames.Add(at::rand({2, 1, 3, 4})));
  EXPECT_FALSE(frames.Add(at::rand({2, 1, 3, 5})));  // the video's size is the first frame's
  EXPECT_FALSE(frames.Add(at::rand({2, 3, 3, 4})));
  EXPECT_EQ(frames.count(), 1);
  EXPECT_FALSE(frames.full());
}

TEST(Mesh, PartsAreTensorsWithTheMeshPluginsMetadata) {
  TempDir dir;
  at::Tensor vertices = at::tensor({0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 1.f})
                            .reshape({1, 4, 3});
  at::Tensor faces = at::tensor({0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3}, at::kLong).reshape({1, 4, 3});
  at::Tensor colors = at::tensor({255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9}, at::kByte).reshape({1, 4, 3});
  auto w = MakeWriter(dir.path());
  const std::string config = R"({"camera": {"cls": "PerspectiveCamera", "fov": 75}})";
  ASSERT_TRUE(w->add_mesh("tetra", vertices, colors, faces, 3, config));
  ASSERT_TRUE(w->add_mesh("cloud", vertices, at::Tensor(), at::Tensor(), 4));
  ASSERT_TRUE(w->close().ok());
  auto values = Values(ReadRun(dir.path()));
  ASSERT_EQ(values.size(), 4u);
  std::map<std::string, tb::proto::Summary::Value> by_tag;
  for (const auto& [step, v] : values) by_tag[v.tag()] = v;
  ASSERT_TRUE(by_tag.count("tetra_VERTEX") && by_tag.count("tetra_FACE") &&
              by_tag.count("tetra_COLOR") && by_tag.count("cloud_VERTEX"));
  auto meta = [&](const std::string& tag) {
    tb::proto::MeshPluginData md;
    EXPECT_EQ(by_tag[tag].metadata().plugin_data().plugin_name(), "mesh");
    EXPECT_TRUE(md.ParseFromString(by_tag[tag].metadata().plugin_data().content()));
    return md;
  };
  const tb::proto::MeshPluginData face = meta("tetra_FACE");
  EXPECT_EQ(face.name(), "tetra");
  EXPECT_EQ(face.content_type(), tb::proto::MeshPluginData::FACE);
  EXPECT_EQ(face.components(), (1u << 1) | (1u << 2) | (1u << 3));
  EXPECT_THAT(face.shape(), ElementsAre(1, 4, 3));
  EXPECT_EQ(face.json_config(), config);
  EXPECT_EQ(meta("cloud_VERTEX").components(), 1u << 1);
  const auto& vt = by_tag["tetra_VERTEX"].tensor();
  EXPECT_EQ(vt.dtype(), tb::proto::DT_FLOAT);
  ASSERT_EQ(vt.tensor_content().size(), 12 * sizeof(float));
  float v[12];
  std::memcpy(v, vt.tensor_content().data(), sizeof v);
  EXPECT_EQ(v[3], 1.f);
  EXPECT_EQ(v[11], 1.f);
  const auto& ft = by_tag["tetra_FACE"].tensor();
  EXPECT_EQ(ft.dtype(), tb::proto::DT_INT32);
  int32_t f[12];
  ASSERT_EQ(ft.tensor_content().size(), sizeof f);
  std::memcpy(f, ft.tensor_content().data(), sizeof f);
  EXPECT_EQ(f[5], 3);
  EXPECT_EQ(by_tag["tetra_COLOR"].tensor().dtype(), tb::proto::DT_UINT8);
  EXPECT_EQ(by_tag["tetra_COLOR"].tensor().tensor_content(),
            std::string("\xff\0\0\0\xff\0\0\0\xff\x09\x09\x09", 12));
}

TEST(Mesh, BadMeshesAreRefusedWithClearMessages) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  at::Tensor vertices = at::zeros({1, 3, 3});
  EXPECT_FALSE(w->add_mesh("m", vertices, at::Tensor(), at::tensor({0, 1, 3}).reshape({1, 1, 3}), 0));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("mesh 'm': face 0 of mesh 0 names vertex 3; vertices are 0-2"));
  at::Tensor bad = vertices.clone();
  bad[0][1][2] = std::nanf("");
  EXPECT_FALSE(w->add_mesh("m", bad, at::Tensor(), at::Tensor(), 0));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("vertex 1 of mesh 0 has a non-finite coordinate"));
  EXPECT_FALSE(w->add_mesh("m", at::zeros({3, 3}), at::Tensor(), at::Tensor(), 0));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("vertices must have shape [batch, vertices, 3], got [3, 3]"));
  EXPECT_FALSE(w->add_mesh("m", vertices, at::zeros({1, 2, 3}, at::kByte), at::Tensor(), 0));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("colors must have one r, g, b per vertex, shape [1, 3, 3], got [1, 2, 3]"));
  EXPECT_FALSE(w->add_mesh("m", vertices, at::Tensor(), at::Tensor(), 0, "{not json"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("config_json is not a JSON object"));
  ASSERT_TRUE(w->close().ok());
}

// ---- embeddings -------------------------------------------------------------

tb::proto::ProjectorConfig ReadConfig(const std::string& dir) {
  tb::proto::ProjectorConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      ReadFile(dir + "/projector_config.pbtxt"), &config));
  return config;
}

TEST(Embedding, WritesTheProjectorsFilesAndConfig) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  at::Tensor mat = at::arange(0, 10, at::kFloat).reshape({5, 2}).div(4);
  std::vector<std::string> labels = {"a", "b", "c\twith tab", "d", "e"};
  at::Tensor thumbs = at::zeros({5, 1, 2, 2});
  thumbs[4].fill_(1.0);
  ASSERT_TRUE(w->add_embedding(mat, tb::EmbeddingMetadata::Labels(labels), &thumbs, 7, "feat/val"));
  tb::EmbeddingMetadata table;
  table.header = {"label", "split"};
  table.rows = {{"x", "train"}, {"y", "val"}, {"z", "val"}, {"w", "train"}, {"v", "val"}};
  ASSERT_TRUE(w->add_embedding(mat.mul(2), table, nullptr, 8, "feat/val"));
  ASSERT_TRUE(w->flush().ok());

  const std::string sub = dir.path() + "/00007/feat%2fval";
  EXPECT_EQ(ReadFile(sub + "/tensors.tsv"), "0\t0.25\n0.5\t0.75\n1\t1.25\n1.5\t1.75\n2\t2.25\n");
  EXPECT_EQ(ReadFile(sub + "/metadata.tsv"), "a\nb\nc with tab\nd\ne\n");
  EXPECT_EQ(ReadFile(dir.path() + "/00008/feat%2fval/metadata.tsv"),
            "label\tsplit\nx\ttrain\ny\tval\nz\tval\nw\ttrain\nv\tval\n");
  // 5 images of 2x2: ceil(sqrt(5 * 4) / 2) = 3 columns, 2 rows.
  DecodedPng sprite = DecodePng(ReadFile(sub + "/sprite.png"));
  ASSERT_TRUE(sprite.ok);
  EXPECT_EQ(sprite.width, 6);
  EXPECT_EQ(sprite.height, 4);
  EXPECT_EQ(sprite.pixels[2 * 6 + 2], 255) << "the fifth image is row 1, column 1";
  EXPECT_EQ(sprite.pixels[0], 0);

  tb::proto::ProjectorConfig config = ReadConfig(dir.path());
  ASSERT_EQ(config.embeddings_size(), 2);
  const auto& first = config.embeddings(0);
  EXPECT_EQ(first.tensor_name(), "feat/val:00007");
  EXPECT_EQ(first.tensor_path(), "00007/feat%2fval/tensors.tsv");
  EXPECT_EQ(first.metadata_path(), "00007/feat%2fval/metadata.tsv");
  EXPECT_EQ(first.sprite().image_path(), "00007/feat%2fval/sprite.png");
  EXPECT_THAT(first.sprite().single_image_dim(), ElementsAre(2, 2));
  EXPECT_FALSE(config.embeddings(1).has_sprite());
  ASSERT_TRUE(w->close().ok());

  // A second session (a resumed run) writing the same tag and step replaces
  // the entry instead of listing it twice; a new one is added.
  auto again = MakeWriter(dir.path());
  ASSERT_TRUE(again->add_embedding(mat, tb::EmbeddingMetadata(), nullptr, 7, "feat/val"));
  ASSERT_TRUE(again->add_embedding(mat, tb::EmbeddingMetadata(), nullptr, 9, "other"));
  ASSERT_TRUE(again->close().ok());
  config = ReadConfig(dir.path());
  std::vector<std::string> names;
  for (const auto& e : config.embeddings()) names.push_back(e.tensor_name());
  EXPECT_THAT(names, ElementsAre("feat/val:00008", "feat/val:00007", "other:00009"));
  EXPECT_FALSE(config.embeddings(1).has_sprite());
  EXPECT_EQ(tb::EmbeddingSubdir("a%b/c", 123456), "123456/a%25b%2fc");
}

TEST(Embedding, BadEmbeddingsAreRefusedWithClearMessages) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  at::Tensor mat = at::zeros({3, 2});
  EXPECT_FALSE(w->add_embedding(mat, tb::EmbeddingMetadata::Labels({"a", "b"}), nullptr, 0));
  EXPECT_THAT(Msg(w->last_rejection()),
              HasSubstr("embedding 'default': 2 metadata row(s) for 3 points; give one per point"));
  EXPECT_FALSE(w->add_embedding(at::zeros({3}), tb::EmbeddingMetadata(), nullptr, 0));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("mat must be a 2-D tensor [points, dim], got shape [3]"));
  at::Tensor bad = mat.clone();
  bad[2][1] = INFINITY;
  EXPECT_FALSE(w->add_embedding(bad, tb::EmbeddingMetadata(), nullptr, 0, "e"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("point 2 has a non-finite value (inf) in dimension 1"));
  at::Tensor huge = at::zeros({3, 1, 5000, 5000}, at::kByte);
  EXPECT_FALSE(w->add_embedding(mat, tb::EmbeddingMetadata(), &huge, 0, "e"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("the Projector loads at most 8192 x 8192"));
  at::Tensor two = at::zeros({2, 1, 4, 4});
  EXPECT_FALSE(w->add_embedding(mat, tb::EmbeddingMetadata(), &two, 0, "e"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("label_images must be [3, C, H, W]"));
  tb::EmbeddingMetadata ragged;
  ragged.header = {"a", "b"};
  ragged.rows = {{"1", "2"}, {"3"}, {"5", "6"}};
  EXPECT_FALSE(w->add_embedding(mat, ragged, nullptr, 0, "e"));
  EXPECT_THAT(Msg(w->last_rejection()), HasSubstr("metadata row 1 has 1 column(s); the header has 2"));
  ASSERT_TRUE(w->close().ok());
}

TEST(Embedding, AFailedFileWriteFailsTheWriterAndNamesTheFile) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  // A file where the step's folder must go: creating 00001/e fails (ENOTDIR),
  // also for root.
  std::ofstream(dir.path() + "/00001") << "in the way";
  EXPECT_TRUE(w->add_embedding(at::zeros({2, 2}), tb::EmbeddingMetadata(), nullptr, 1, "e"));
  const absl::Status st = w->flush();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << "ENOTDIR's code (CodeForErrno), kept";
  EXPECT_THAT(Msg(st), HasSubstr("add_embedding: cannot create the folder"));
  EXPECT_THAT(Msg(st), HasSubstr("00001/e"));
  // The event file goes on (the curves and the session's end still matter),
  // and the failure stays reported.
  EXPECT_TRUE(w->add_scalar("after", 1, 2));
  EXPECT_FALSE(w->close().ok());
  auto values = Values(ReadRun(dir.path()));
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0].second.tag(), "after");
  // A tag that names a folder ("..") is refused before anything is written.
  auto again = MakeWriter(dir.path() + "/other");
  EXPECT_FALSE(again->add_embedding(at::zeros({2, 2}), tb::EmbeddingMetadata(), nullptr, 1, ".."));
  EXPECT_THAT(Msg(again->last_rejection()), HasSubstr("the tag cannot be \".\" or \"..\""));
}

TEST(Embedding, RewindDropsTheEmbeddingsOfTheAbandonedTail) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  for (int64_t step : {3, 8, 12}) {
    ASSERT_TRUE(w->add_embedding(at::zeros({2, 2}), tb::EmbeddingMetadata(), nullptr, step, "e"));
  }
  ASSERT_TRUE(w->close().ok());
  absl::StatusOr<tb::RewindReport> r = tb::RewindRun(dir.path(), 8);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->embeddings_removed, 2);
  tb::proto::ProjectorConfig config = ReadConfig(dir.path());
  ASSERT_EQ(config.embeddings_size(), 1);
  EXPECT_EQ(config.embeddings(0).tensor_name(), "e:00003");
  EXPECT_TRUE(fs::exists(dir.path() + "/00003/e/tensors.tsv"));
  EXPECT_FALSE(fs::exists(dir.path() + "/00008/e"));
  EXPECT_FALSE(fs::exists(dir.path() + "/00012/e"));
  EXPECT_EQ(tb::EmbeddingStep("a:b:00042"), 42);
  EXPECT_EQ(tb::EmbeddingStep("no step"), -1);
}

// ---- model graph -------------------------------------------------------------

nn::Sequential SmallCnn() {
  nn::Sequential model;
  model->push_back(nn::Conv2d(nn::Conv2dOptions(1, 4, 3).padding(1)));
  model->push_back(nn::ReLU());
  model->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  model->push_back(nn::Flatten());
  model->push_back(nn::Dropout(0.5));
  model->push_back(nn::Linear(4 * 4 * 4, 3));
  return model;
}

std::map<std::string, tb::proto::NodeDef> Nodes(const tb::proto::GraphDef& g) {
  std::map<std::string, tb::proto::NodeDef> out;
  for (const auto& n : g.node()) EXPECT_TRUE(out.emplace(n.name(), n).second) << n.name();
  return out;
}

// "name <- inputs" a line, for failure messages.
std::string Describe(const std::map<std::string, tb::proto::NodeDef>& nodes) {
  std::string out;
  for (const auto& [name, n] : nodes) absl::StrAppend(&out, name, " <- ", absl::StrJoin(n.input(), ", "), "\n");
  return out;
}

std::vector<int64_t> ShapeOf(const tb::proto::NodeDef& n) {
  std::vector<int64_t> out;
  for (const auto& d : n.attr().at("_output_shapes").list().shape(0).dim()) out.push_back(d.size());
  return out;
}

TEST(ModelGraph, ASequentialIsRecordedModuleByModuleWithShapes) {
  torch::manual_seed(1);
  nn::Sequential model = SmallCnn();
  model->train();
  at::Tensor batch = at::rand({2, 1, 8, 8});
  // The recording must not draw random numbers (dropout runs in eval mode).
  torch::manual_seed(5);
  absl::StatusOr<tb::proto::GraphDef> graph = tb::RecordModelGraph(*model, batch);
  const float next_random = at::rand({1}).item<float>();
  torch::manual_seed(5);
  EXPECT_EQ(next_random, at::rand({1}).item<float>());
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_TRUE(model->is_training()) << "the training mode is restored";
  for (const auto& child : model->children()) EXPECT_TRUE(child->is_training());

  auto nodes = Nodes(*graph);
  SCOPED_TRACE(Describe(nodes));
  ASSERT_TRUE(nodes.count("Sequential/Conv2d[0]/weight"));
  EXPECT_EQ(nodes["Sequential/Conv2d[0]/weight"].op(), "Parameter");
  EXPECT_EQ(ShapeOf(nodes["Sequential/Conv2d[0]/weight"]), (std::vector<int64_t>{4, 1, 3, 3}));
  ASSERT_TRUE(nodes.count("Sequential/Conv2d[0]/convolution"));
  const auto& conv = nodes["Sequential/Conv2d[0]/convolution"];
  EXPECT_THAT(conv.input(), ElementsAre("input", "Sequential/Conv2d[0]/weight",
                                        "Sequential/Conv2d[0]/bias"));
  EXPECT_EQ(ShapeOf(conv), (std::vector<int64_t>{2, 4, 8, 8}));
  ASSERT_TRUE(nodes.count("Sequential/ReLU[1]/relu"));
  EXPECT_THAT(nodes["Sequential/ReLU[1]/relu"].input(), ElementsAre("Sequential/Conv2d[0]/convolution"));
  ASSERT_TRUE(nodes.count("Sequential/MaxPool2d[2]/maxPool2DWithIndices"));
  EXPECT_EQ(ShapeOf(nodes["Sequential/MaxPool2d[2]/maxPool2DWithIndices"]),
            (std::vector<int64_t>{2, 4, 4, 4}));
  // Dropout runs no operation in eval mode: a pass-through node keeps it in the chain.
  ASSERT_TRUE(nodes.count("Sequential/Dropout[4]/dropout"));
  EXPECT_EQ(nodes["Sequential/Dropout[4]/dropout"].op(), "Dropout");
  ASSERT_TRUE(nodes.count("Sequential/Linear[5]/addmm"));
  const auto& addmm = nodes["Sequential/Linear[5]/addmm"];
  EXPECT_THAT(addmm.input(), ::testing::Contains("Sequential/Dropout[4]/dropout"));
  EXPECT_THAT(addmm.input(), ::testing::Contains("Sequential/Linear[5]/bias"));
  EXPECT_EQ(ShapeOf(nodes["output"]), (std::vector<int64_t>{2, 3}));
  EXPECT_THAT(nodes["output"].input(), ElementsAre("Sequential/Linear[5]/addmm"));
  EXPECT_EQ(ShapeOf(nodes["input"]), (std::vector<int64_t>{2, 1, 8, 8}));
}

// A model with its own forward: the graph follows the output's autograd graph.
struct TwoTowerImpl : nn::Module {
  TwoTowerImpl() {
    left = register_module("left", nn::Linear(3, 2));
    right = register_module("right", nn::Linear(3, 2));
  }
  at::Tensor forward(const at::Tensor& x) { return left->forward(x).relu() + right->forward(x); }
  nn::Linear left{nullptr}, right{nullptr};
};
TORCH_MODULE(TwoTower);

TEST(ModelGraph, AnyModelFromTheOutputOfItsForward) {
  TwoTower model;
  at::Tensor out = model->forward(at::ones({4, 3}));
  absl::StatusOr<tb::proto::GraphDef> graph = tb::ModelGraph(*model, out);
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto nodes = Nodes(*graph);
  SCOPED_TRACE(Describe(nodes));
  EXPECT_TRUE(nodes.count("TwoTower/Linear[left]/weight"));
  EXPECT_TRUE(nodes.count("TwoTower/Linear[left]/addmm"));
  EXPECT_TRUE(nodes.count("TwoTower/Linear[right]/addmm"));
  ASSERT_TRUE(nodes.count("TwoTower/relu"));  // no parameter: the root module
  EXPECT_THAT(nodes["TwoTower/relu"].input(), ElementsAre("TwoTower/Linear[left]/addmm"));
  ASSERT_TRUE(nodes.count("TwoTower/add"));
  EXPECT_THAT(nodes["TwoTower/add"].input(),
              ElementsAre("TwoTower/relu", "TwoTower/Linear[right]/addmm"));
  EXPECT_THAT(nodes["output"].input(), ElementsAre("TwoTower/add"));

  // Without an autograd graph: a clear error, and the hierarchy alone.
  at::Tensor detached = out.detach();
  absl::StatusOr<tb::proto::GraphDef> none = tb::ModelGraph(*model, detached);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(Msg(none.status()), HasSubstr("run the forward pass with gradients enabled"));
  absl::StatusOr<tb::proto::GraphDef> hierarchy = tb::RecordModelGraph(*model, at::ones({4, 3}));
  ASSERT_TRUE(hierarchy.ok());
  auto h = Nodes(*hierarchy);
  EXPECT_TRUE(h.count("TwoTower/Linear[right]/bias"));
  EXPECT_FALSE(h.count("output"));

  // The writer: one graph_def event at step 0 that parses back.
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->add_graph(*model, out));
  EXPECT_FALSE(w->add_graph(*model, detached));
  ASSERT_TRUE(w->close().ok());
  int graphs = 0;
  for (const Event& e : ReadRun(dir.path())) {
    if (e.what_case() != Event::kGraphDef) continue;
    ++graphs;
    tb::proto::GraphDef back;
    ASSERT_TRUE(back.ParseFromString(e.graph_def()));
    EXPECT_EQ(back.node_size(), graph->node_size());
  }
  EXPECT_EQ(graphs, 1);
}

TEST(ModelGraph, AnInPlaceModuleKeepsTheChainConnected) {
  nn::Sequential model;
  model->push_back(nn::Linear(3, 4));
  model->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
  model->push_back(nn::Linear(4, 2));
  absl::StatusOr<tb::proto::GraphDef> graph = tb::RecordModelGraph(*model, at::ones({2, 3}));
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto nodes = Nodes(*graph);
  SCOPED_TRACE(Describe(nodes));
  ASSERT_TRUE(nodes.count("Sequential/ReLU[1]/relu"));
  EXPECT_THAT(nodes["Sequential/ReLU[1]/relu"].input(), ElementsAre("Sequential/Linear[0]/addmm"));
  EXPECT_THAT(nodes["Sequential/Linear[2]/addmm"].input(),
              ::testing::Contains("Sequential/ReLU[1]/relu"));
}

TEST(ModelGraph, ASequentialThatThrowsNamesTheInputShape) {
  nn::Sequential model = SmallCnn();
  absl::StatusOr<tb::proto::GraphDef> graph = tb::RecordModelGraph(*model, at::rand({2, 3, 8, 8}));
  ASSERT_FALSE(graph.ok());
  EXPECT_THAT(Msg(graph.status()),
              HasSubstr("the model's forward pass on the sample input (shape [2, 3, 8, 8]) threw"));
  EXPECT_TRUE(model->is_training());
}

// ---- record_graph: the forward pass off the calling thread -----------------

// The thread its forward ran on, for the test to compare; cloneable, so a
// Sequential holding it is recorded on a copy.
std::atomic<std::thread::id> probe_thread{};
struct ThreadProbeImpl : nn::Cloneable<ThreadProbeImpl> {
  void reset() override {}
  at::Tensor forward(const at::Tensor& x) {
    probe_thread.store(std::this_thread::get_id());
    return x * 2;
  }
};
TORCH_MODULE(ThreadProbe);

// Not cloneable (torch::nn::Module, not Cloneable): recorded on the caller.
struct HalfImpl : nn::Module {
  at::Tensor forward(const at::Tensor& x) { return x * 0.5; }
};
TORCH_MODULE(Half);

// The one graph a run holds, parsed.
tb::proto::GraphDef OnlyGraph(const std::string& dir) {
  tb::proto::GraphDef graph;
  int graphs = 0;
  for (const Event& e : ReadRun(dir)) {
    if (e.what_case() != Event::kGraphDef) continue;
    ++graphs;
    EXPECT_EQ(e.step(), 0);
    EXPECT_TRUE(graph.ParseFromString(e.graph_def()));
  }
  EXPECT_EQ(graphs, 1);
  return graph;
}

TEST(RecordGraph, RunsTheForwardPassOnACopyOnTheWriterThread) {
  torch::manual_seed(1);
  nn::Sequential model = SmallCnn();
  model->push_back(ThreadProbe());
  model->train();
  at::Tensor batch = at::rand({2, 1, 8, 8});
  TempDir dir;
  auto w = MakeWriter(dir.path());
  probe_thread.store(std::thread::id());

  // The copy's parameters are initialised and overwritten (clone()): the
  // run's random stream must be where it was, as if no graph were recorded.
  torch::manual_seed(5);
  ASSERT_TRUE(w->record_graph(*model, batch));
  const float next_random = at::rand({1}).item<float>();
  torch::manual_seed(5);
  EXPECT_EQ(next_random, at::rand({1}).item<float>());
  EXPECT_TRUE(model->is_training());
  for (const auto& child : model->children()) EXPECT_TRUE(child->is_training());

  // Training goes on meanwhile: the record is of the copies, taken at the call.
  {
    torch::NoGradGuard no_grad;
    for (at::Tensor& p : model->parameters()) p.fill_(0.0);
    batch.resize_({7, 1, 8, 8});
  }
  ASSERT_TRUE(w->close().ok());
  EXPECT_NE(probe_thread.load(), std::thread::id()) << "the forward pass ran";
  EXPECT_NE(probe_thread.load(), std::this_thread::get_id());

  auto nodes = Nodes(OnlyGraph(dir.path()));
  SCOPED_TRACE(Describe(nodes));
  ASSERT_TRUE(nodes.count("Sequential/Conv2d[0]/convolution"));
  EXPECT_EQ(ShapeOf(nodes["Sequential/Conv2d[0]/convolution"]), (std::vector<int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(ShapeOf(nodes["input"]), (std::vector<int64_t>{2, 1, 8, 8}));
  ASSERT_TRUE(nodes.count("Sequential/ThreadProbe[6]/mul"));
  EXPECT_THAT(nodes["output"].input(), ElementsAre("Sequential/ThreadProbe[6]/mul"));
  EXPECT_EQ(ShapeOf(nodes["output"]), (std::vector<int64_t>{2, 3}));
}

TEST(RecordGraph, AModuleThatCannotBeCopiedIsRecordedOnTheCaller) {
  nn::Sequential model;
  model->push_back(nn::Linear(3, 4));
  model->push_back(Half());
  absl::StatusOr<std::shared_ptr<nn::Module>> copy = tb::CopyModelForGraph(*model);
  ASSERT_FALSE(copy.ok());
  EXPECT_THAT(Msg(copy.status()),
              HasSubstr("the model cannot be copied to record its graph off the training thread"));
  EXPECT_THAT(Msg(copy.status()), HasSubstr("Half"));

  TempDir dir;
  auto w = MakeWriter(dir.path());
  ASSERT_TRUE(w->record_graph(*model, at::ones({5, 3})));
  ASSERT_TRUE(w->close().ok());
  auto nodes = Nodes(OnlyGraph(dir.path()));
  SCOPED_TRACE(Describe(nodes));
  ASSERT_TRUE(nodes.count("Sequential/Half[1]/mul"));
  EXPECT_EQ(ShapeOf(nodes["output"]), (std::vector<int64_t>{5, 4}));

  // Not a Sequential: no forward pass to record, the module tree.
  TwoTower tower;
  EXPECT_EQ(tb::CopyModelForGraph(*tower).status().code(), absl::StatusCode::kUnimplemented);
  TempDir dir2;
  auto w2 = MakeWriter(dir2.path());
  ASSERT_TRUE(w2->record_graph(*tower, at::ones({4, 3})));
  ASSERT_TRUE(w2->close().ok());
  auto tree = Nodes(OnlyGraph(dir2.path()));
  EXPECT_TRUE(tree.count("TwoTower/Linear[left]/weight"));
  EXPECT_FALSE(tree.count("output"));
}

TEST(RecordGraph, AForwardPassThatThrowsGivesTheModuleTreeAndAWarning) {
  nn::Sequential model = SmallCnn();
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(w->record_graph(*model, at::rand({2, 3, 8, 8})));  // 3 channels, not 1
  ASSERT_TRUE(w->close().ok());
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("warning: the model graph shows the module tree only"));
  EXPECT_THAT(err, HasSubstr("(shape [2, 3, 8, 8]) threw"));
  auto nodes = Nodes(OnlyGraph(dir.path()));
  EXPECT_TRUE(nodes.count("Sequential/Conv2d[0]/weight"));
  EXPECT_FALSE(nodes.count("output"));
  EXPECT_FALSE(w->record_graph(*model, at::ones({2, 1, 8, 8}))) << "closed";

  TempDir dir2;
  auto w2 = MakeWriter(dir2.path());
  EXPECT_FALSE(w2->record_graph(*model, at::Tensor()));
  EXPECT_THAT(Msg(w2->last_rejection()), HasSubstr("record_graph: the sample input is an undefined tensor"));
}

// Only a strided input is cut to one sample: a sparse one is copied whole,
// and whatever its forward pass does, the event file stays healthy.
TEST(RecordGraph, ASparseInputIsCopiedWholeAndTheFileStaysHealthy) {
  nn::Sequential model(nn::Linear(3, 2));
  TempDir dir;
  auto w = MakeWriter(dir.path());
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(w->record_graph(*model, at::rand({4, 3}).to_sparse()));
  ASSERT_TRUE(w->add_scalar("after", 1.0, 0));
  const absl::Status closed = w->close();
  (void)::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(closed.ok()) << closed;
  OnlyGraph(dir.path());
  int scalars = 0;
  for (const Event& e : ReadRun(dir.path())) scalars += e.has_summary() ? 1 : 0;
  EXPECT_EQ(scalars, 1);
}

// ---- images from a list, inspect -------------------------------------------

TEST(Images, AListOfImagesIsTheGridOfTheirStack) {
  TempDir a, b;
  std::vector<at::Tensor> list = {at::zeros({3, 4, 4}), at::ones({3, 4, 4}), at::full({3, 4, 4}, 0.5)};
  auto wa = MakeWriter(a.path());
  auto wb = MakeWriter(b.path());
  ASSERT_TRUE(wa->add_images("x", list, 1));
  ASSERT_TRUE(wb->add_images("x", at::stack(list), 1));
  EXPECT_FALSE(wa->add_images("x", {at::zeros({3, 4, 4}), at::zeros({3, 5, 4})}, 1));
  EXPECT_THAT(Msg(wa->last_rejection()),
              HasSubstr("image 1 of the list is [3, 5, 4] Float on cpu; every image must have "
                        "the first one's shape, dtype and device, [3, 4, 4] Float on cpu"));
  EXPECT_FALSE(wa->add_images("x", std::vector<at::Tensor>{}, 1));
  EXPECT_FALSE(wa->add_images("x", {at::Tensor(), at::zeros({3, 4, 4})}, 1));
  EXPECT_THAT(Msg(wa->last_rejection()), HasSubstr("image 0 of the list is an undefined tensor"));
  ASSERT_TRUE(wa->close().ok());
  ASSERT_TRUE(wb->close().ok());
  EXPECT_EQ(Values(ReadRun(a.path()))[0].second.image().encoded_image_string(),
            Values(ReadRun(b.path()))[0].second.image().encoded_image_string());
}

TEST(Inspect, ListsGraphsEmbeddingsVideosAndMeshes) {
  TempDir dir;
  auto w = MakeWriter(dir.path());
  TwoTower model;
  ASSERT_TRUE(w->add_graph(*model, model->forward(at::ones({1, 3}))));
  ASSERT_TRUE(w->add_video("clip", at::zeros({1, 2, 3, 4, 4}), 3));
  ASSERT_TRUE(w->add_image("still", at::zeros({3, 4, 4}), 3));
  ASSERT_TRUE(w->add_mesh("m", at::zeros({1, 3, 3}), at::Tensor(), at::Tensor(), 3));
  ASSERT_TRUE(w->add_embedding(at::zeros({2, 2}), tb::EmbeddingMetadata(), nullptr, 12, "emb"));
  ASSERT_TRUE(w->close().ok());
  absl::StatusOr<tb::InspectReport> report = tb::InspectLogDir(dir.path());
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->runs.size(), 1u);
  std::map<std::string, std::string> kinds;
  std::map<std::string, int64_t> steps;
  for (const auto& t : report->runs[0].tags) {
    kinds[t.tag] = t.kind;
    steps[t.tag] = t.last_step;
  }
  EXPECT_EQ(kinds["__run_graph__"], "graph");
  EXPECT_EQ(kinds["clip"], "video");
  EXPECT_EQ(kinds["still"], "image");
  EXPECT_EQ(kinds["m_VERTEX"], "mesh");
  EXPECT_EQ(kinds["emb:00012"], "embedding");
  EXPECT_EQ(steps["emb:00012"], 12);
}

}  // namespace
