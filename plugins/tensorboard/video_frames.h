// tensorboard: the frames of the plugin's inputs/video.
//
// The first image of each of a run's first iterations, copied into one float
// buffer (the event's tensor lives only for its hook), then scaled and laid
// out once as the THWC bytes SummaryWriter::add_video takes:
//
//   VideoFrames frames(16);
//   if (!frames.Add(batch)) { ... the image size changed: the video ends ... }
//   if (frames.full()) {
//     const std::vector<uint8_t> pixels = frames.ScaledPixels();
//     writer.add_video("inputs/video", frames.View(pixels), 0, 4.0);
//   }
//
// Each frame is scaled by its own range, (x - min) / max(max - min, 1e-12)
// in float, then made bytes with FloatToImageByte (summaries.h): inputs are
// usually normalised (mean 0, std 1), which unscaled would show as black and
// white. A frame with a NaN comes out black, as through LibTorch's min/max.
// The bytes are the ones LibTorch's ops and PrepareVideo give (tested), made
// with plain loops: on the training thread, cold after the backward pass,
// those ops took ~130 us at the 16th frame's iteration (trainer bench,
// 2026-12-06); the loops a few microseconds.
#ifndef TRAINBUS_PLUGINS_TENSORBOARD_VIDEO_FRAMES_H_
#define TRAINBUS_PLUGINS_TENSORBOARD_VIDEO_FRAMES_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "trainbus/tensorboard/summaries.h"

namespace at {
class Tensor;
}

namespace trainbus::tensorboard_plugin {

class VideoFrames {
 public:
  explicit VideoFrames(int64_t capacity) : capacity_(capacity) {}

  // Copies batch[0] of a [N, C, H, W] batch (any dtype, device or strides)
  // as the next frame. A contiguous float CPU batch is copied with memcpy:
  // the dispatched ops (select, detach, to) cost ~10 us a frame, cold after
  // the backward pass; any other batch goes through a tensor copy. Returns
  // false, copying nothing, when the video is full, the batch is not 4-D or
  // holds no pixels, or the image's [C, H, W] differs from the first frame's.
  bool Add(const at::Tensor& batch);

  int64_t count() const { return count_; }
  bool full() const { return count_ == capacity_; }

  // count() frames x height x width x channels bytes, each frame scaled by
  // its own range (see above).
  std::vector<uint8_t> ScaledPixels() const;
  // ScaledPixels()'s bytes with this video's shape, for add_video.
  tensorboard::VideoPixels View(const std::vector<uint8_t>& pixels) const {
    return {pixels, count_, height_, width_, channels_};
  }

 private:
  int64_t frame_values() const { return channels_ * height_ * width_; }

  int64_t capacity_;
  int64_t count_ = 0;
  int64_t channels_ = 0, height_ = 0, width_ = 0;
  std::unique_ptr<float[]> values_;  // capacity_ frames of CHW floats, count_ filled
};

}  // namespace trainbus::tensorboard_plugin

#endif  // TRAINBUS_PLUGINS_TENSORBOARD_VIDEO_FRAMES_H_
