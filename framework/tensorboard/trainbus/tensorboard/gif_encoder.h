// trainbus/tensorboard/gif_encoder.h — animated GIF encoding with giflib.
//
//   absl::StatusOr<std::string> gif = EncodeAnimatedGif(frames, 16, 32, 32, 3, 4.0);
//
// `frames` holds `num_frames` images back to back, each row-major HWC uint8
// (height rows of width * channels bytes); channels 1 (gray), 3 (RGB) or 4
// (RGBA, alpha dropped). Each frame gets its own 256-colour palette: gray
// frames are exact, colour frames are median-cut quantised by giflib
// (GifQuantizeBuffer), without dithering, so the same frames give the same
// bytes. fps sets each frame's delay (rounded to GIF's 1/100 s, at least
// 2/100 s since browsers slow shorter delays to 1/10 s, at most 655.35 s); the GIF loops
// forever (the NETSCAPE2.0 extension), as TensorBoard's image card expects
// of a video. Thread-safe. Errors: InvalidArgument for bad sizes or fps,
// Internal from giflib.
#ifndef TRAINBUS_TENSORBOARD_GIF_ENCODER_H_
#define TRAINBUS_TENSORBOARD_GIF_ENCODER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace trainbus::tensorboard {

absl::StatusOr<std::string> EncodeAnimatedGif(const uint8_t* frames, int num_frames, int height,
                                              int width, int channels, double fps);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_GIF_ENCODER_H_
