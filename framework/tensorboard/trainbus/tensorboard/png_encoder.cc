#include "trainbus/tensorboard/png_encoder.h"

#include <png.h>

#include <csetjmp>
#include <vector>

#include "absl/strings/str_cat.h"

namespace trainbus::tensorboard {
namespace {

struct PngContext {
  std::string* out;
  std::string error;
};

void WriteToString(png_structp png, png_bytep data, png_size_t size) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  ctx->out->append(reinterpret_cast<const char*>(data), size);
}

void FlushNothing(png_structp) {}

void OnError(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  ctx->error = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void OnWarning(png_structp, png_const_charp) {}

}  // namespace

absl::StatusOr<std::string> EncodePng(const uint8_t* pixels, int width, int height,
                                      int channels) {
  if (width <= 0 || height <= 0 || channels < 1 || channels > 4) {
    return absl::InvalidArgumentError(absl::StrCat("cannot encode a ", width, "x", height,
                                                   " PNG with ", channels,
                                                   " channel(s); need positive sizes and 1-4 "
                                                   "channels"));
  }
  static constexpr int kColorType[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  std::string out;
  out.reserve(static_cast<size_t>(width) * height * channels / 2 + 1024);
  PngContext ctx{&out, {}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, OnError, OnWarning);
  if (png == nullptr) return absl::InternalError("png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return absl::InternalError("png_create_info_struct failed");
  }
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  const size_t stride = static_cast<size_t>(width) * channels;
  for (int y = 0; y < height; ++y) {
    rows[y] = const_cast<png_bytep>(pixels + stride * static_cast<size_t>(y));
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return absl::InternalError(absl::StrCat("PNG encoding failed: ", ctx.error));
  }
  png_set_write_fn(png, &ctx, WriteToString, FlushNothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               kColorType[channels - 1], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 3);
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace trainbus::tensorboard
