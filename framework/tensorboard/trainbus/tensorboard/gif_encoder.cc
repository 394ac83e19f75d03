#include "trainbus/tensorboard/gif_encoder.h"

#include <gif_lib.h>

#include <algorithm>
#include <array>
#include <unordered_map>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"

namespace trainbus::tensorboard {
namespace {

int AppendToString(GifFileType* gif, const GifByteType* data, int size) {
  static_cast<std::string*>(gif->UserData)->append(reinterpret_cast<const char*>(data), size);
  return size;
}

absl::Status GifError(const char* what, int code) {
  const char* message = GifErrorString(code);
  return absl::InternalError(absl::StrCat("GIF encoding failed in ", what, ": ",
                                          message ? message : "unknown giflib error"));
}

// One frame as palette indices plus its palette.
struct IndexedFrame {
  std::vector<GifByteType> indices;
  std::vector<GifColorType> palette;  // 256 entries (a GIF palette is a power of two)
};

absl::StatusOr<IndexedFrame> IndexFrame(const uint8_t* hwc, int height, int width, int channels) {
  const size_t n = static_cast<size_t>(height) * width;
  IndexedFrame frame;
  frame.indices.resize(n);
  frame.palette.resize(256);
  if (channels == 1) {
    for (int i = 0; i < 256; ++i) {
      frame.palette[i] = {static_cast<GifByteType>(i), static_cast<GifByteType>(i),
                          static_cast<GifByteType>(i)};
    }
    std::copy(hwc, hwc + n, frame.indices.begin());
    return frame;
  }
  // A frame of at most 256 colours (flat colours, masks, most small
  // frames) gets them exactly.
  std::unordered_map<uint32_t, GifByteType> exact;
  for (size_t i = 0; i < n && exact.size() <= 256; ++i) {
    const uint8_t* p = hwc + i * channels;
    const uint32_t rgb = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
    auto [it, added] = exact.try_emplace(rgb, static_cast<GifByteType>(exact.size()));
    if (added && exact.size() <= 256) frame.palette[it->second] = {p[0], p[1], p[2]};
    frame.indices[i] = it->second;
  }
  if (exact.size() <= 256) return frame;
  // Otherwise giflib's median cut picks the colours (it works on 5 bits a
  // channel), and each palette entry becomes the mean of the pixels it
  // stands for, which restores the low bits.
  std::vector<GifByteType> r(n), g(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    r[i] = hwc[i * channels];
    g[i] = hwc[i * channels + 1];
    b[i] = hwc[i * channels + 2];
  }
  int colors = 256;
  {
    // GifQuantizeBuffer keeps its sort axis in a global: one caller at a time
    // (each event file has its own writer thread).
    static std::mutex* const quantize_mu = new std::mutex;
    std::lock_guard<std::mutex> lock(*quantize_mu);
    if (GifQuantizeBuffer(width, height, &colors, r.data(), g.data(), b.data(),
                          frame.indices.data(), frame.palette.data()) == GIF_ERROR) {
      return absl::InternalError(
          "GIF encoding failed: giflib could not quantise a frame's colours");
    }
  }
  std::vector<std::array<uint64_t, 4>> sums(256, {0, 0, 0, 0});
  for (size_t i = 0; i < n; ++i) {
    auto& s = sums[frame.indices[i]];
    s[0] += r[i];
    s[1] += g[i];
    s[2] += b[i];
    ++s[3];
  }
  for (int k = 0; k < 256; ++k) {
    if (sums[k][3] == 0) continue;
    const uint64_t c = sums[k][3];
    frame.palette[k] = {static_cast<GifByteType>((sums[k][0] + c / 2) / c),
                        static_cast<GifByteType>((sums[k][1] + c / 2) / c),
                        static_cast<GifByteType>((sums[k][2] + c / 2) / c)};
  }
  // Entries past `colors` stay black; the palette keeps 256 entries.
  return frame;
}

}  // namespace

absl::StatusOr<std::string> EncodeAnimatedGif(const uint8_t* frames, int num_frames, int height,
                                              int width, int channels, double fps) {
  if (num_frames < 1 || height < 1 || width < 1 || height > 65535 || width > 65535 ||
      (channels != 1 && channels != 3 && channels != 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot encode a GIF of ", num_frames, " frame(s) of ", width, "x", height, " with ",
        channels, " channel(s); need >= 1 frame, sizes 1-65535 and 1, 3 or 4 channels"));
  }
  if (!(fps > 0) || !std::isfinite(fps)) {
    return absl::InvalidArgumentError(absl::StrCat("fps must be a positive number, got ", fps));
  }
  std::string out;
  int error = 0;
  GifFileType* gif = EGifOpen(&out, AppendToString, &error);
  if (gif == nullptr) return GifError("EGifOpen", error);
  // Closes the file on every path; a failed close after success is reported.
  auto close = [&]() {
    int close_error = 0;
    GifFileType* g = gif;
    gif = nullptr;
    return g == nullptr || EGifCloseFile(g, &close_error) == GIF_OK
               ? absl::OkStatus()
               : GifError("EGifCloseFile", close_error);
  };
  auto fail = [&](const char* what) {
    const int code = gif->Error;
    (void)close();
    return GifError(what, code);
  };

  EGifSetGifVersion(gif, true);  // GIF89a: frame delays and looping
  if (EGifPutScreenDesc(gif, width, height, 8, 0, nullptr) == GIF_ERROR) {
    return fail("EGifPutScreenDesc");
  }
  // Loop forever: NETSCAPE2.0 application extension, loop count 0.
  static const GifByteType kNetscape[] = {'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0'};
  static const GifByteType kLoopForever[] = {1, 0, 0};
  if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
      EGifPutExtensionBlock(gif, sizeof(kNetscape), kNetscape) == GIF_ERROR ||
      EGifPutExtensionBlock(gif, sizeof(kLoopForever), kLoopForever) == GIF_ERROR ||
      EGifPutExtensionTrailer(gif) == GIF_ERROR) {
    return fail("the looping extension");
  }
  GraphicsControlBlock gcb;
  gcb.DisposalMode = DISPOSE_DO_NOT;
  gcb.UserInputFlag = false;
  // GIF's delay is 16 bits of 1/100 s.
  gcb.DelayTime = static_cast<int>(std::lround(std::clamp(100.0 / fps, 2.0, 65535.0)));
  gcb.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType gcb_bytes[4];
  EGifGCBToExtension(&gcb, gcb_bytes);

  const size_t frame_bytes = static_cast<size_t>(height) * width * channels;
  for (int f = 0; f < num_frames; ++f) {
    absl::StatusOr<IndexedFrame> frame =
        IndexFrame(frames + f * frame_bytes, height, width, channels);
    if (!frame.ok()) {
      (void)close();
      return frame.status();
    }
    ColorMapObject* map = GifMakeMapObject(256, frame->palette.data());
    if (map == nullptr) {
      (void)close();
      return absl::ResourceExhaustedError("GIF encoding failed: out of memory for a palette");
    }
    const bool ok = EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, 4, gcb_bytes) != GIF_ERROR &&
                    EGifPutImageDesc(gif, 0, 0, width, height, false, map) != GIF_ERROR;
    GifFreeMapObject(map);  // EGifPutImageDesc keeps its own copy
    if (!ok) return fail("EGifPutImageDesc");
    for (int y = 0; y < height; ++y) {
      if (EGifPutLine(gif, frame->indices.data() + static_cast<size_t>(y) * width, width) ==
          GIF_ERROR) {
        return fail("EGifPutLine");
      }
    }
  }
  if (absl::Status st = close(); !st.ok()) return st;
  return out;
}

}  // namespace trainbus::tensorboard
