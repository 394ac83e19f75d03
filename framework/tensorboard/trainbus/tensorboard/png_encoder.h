// trainbus/tensorboard/png_encoder.h — PNG encoding with libpng.
//
//   absl::StatusOr<std::string> png = EncodePng(pixels, width, height, 3);
//
// `pixels` is row-major, interleaved, 8 bits per channel: height rows of
// width * channels bytes. channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
// (the same numbers as Summary.Image.colorspace). Compression favours speed
// (zlib level 3): images are written while training runs.
// Thread-safe. Errors: InvalidArgument for bad sizes, Internal from libpng.
#ifndef TRAINBUS_TENSORBOARD_PNG_ENCODER_H_
#define TRAINBUS_TENSORBOARD_PNG_ENCODER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace trainbus::tensorboard {

absl::StatusOr<std::string> EncodePng(const uint8_t* pixels, int width, int height,
                                      int channels);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_PNG_ENCODER_H_
