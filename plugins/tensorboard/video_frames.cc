#include "video_frames.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/ATen.h>

namespace trainbus::tensorboard_plugin {

bool VideoFrames::Add(const at::Tensor& batch) {
  if (full() || batch.dim() != 4 || batch.size(0) == 0) return false;
  const int64_t c = batch.size(1), h = batch.size(2), w = batch.size(3);
  if (c * h * w == 0) return false;
  if (values_ == nullptr) {
    channels_ = c;
    height_ = h;
    width_ = w;
    values_.reset(new float[capacity_ * frame_values()]);
  } else if (c != channels_ || h != height_ || w != width_) {
    return false;
  }
  float* frame = values_.get() + count_ * frame_values();
  if (batch.device().is_cpu() && batch.scalar_type() == at::kFloat && batch.is_contiguous() &&
      !batch.is_neg()) {
    std::memcpy(frame, batch.data_ptr<float>(), sizeof(float) * frame_values());
  } else {
    at::from_blob(frame, {c, h, w}, at::TensorOptions().dtype(at::kFloat))
        .copy_(batch[0].detach());
  }
  ++count_;
  return true;
}

std::vector<uint8_t> VideoFrames::ScaledPixels() const {
  const int64_t n = frame_values(), plane = height_ * width_;
  std::vector<uint8_t> pixels(static_cast<size_t>(count_ * n));
  for (int64_t f = 0; f < count_; ++f) {
    const float* x = values_.get() + f * n;
    float lo = x[0], hi = x[0];
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(x[i])) {  // LibTorch's min and max propagate it
        lo = hi = x[i];
        break;
      }
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    // std::max keeps a NaN range (its first argument), as clamp_min does.
    const float range = std::max(hi - lo, 1e-12f);
    uint8_t* out = pixels.data() + f * n;
    for (int64_t ch = 0; ch < channels_; ++ch) {
      for (int64_t p = 0; p < plane; ++p) {
        out[p * channels_ + ch] = tensorboard::FloatToImageByte((x[ch * plane + p] - lo) / range);
      }
    }
  }
  return pixels;
}

}  // namespace trainbus::tensorboard_plugin
