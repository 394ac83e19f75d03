// trainbus/tensorboard/wav_encoder.h — 16-bit PCM WAV files in memory.
//
//   std::string wav = EncodeWav(samples, frames, channels, 44100);
//
// `samples` holds frames * channels interleaved signed 16-bit samples. The
// result is a canonical 44-byte RIFF/WAVE header ("fmt " chunk, PCM format 1,
// 16 bits per sample) followed by the "data" chunk, little-endian.
#ifndef TRAINBUS_TENSORBOARD_WAV_ENCODER_H_
#define TRAINBUS_TENSORBOARD_WAV_ENCODER_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace trainbus::tensorboard {

inline constexpr size_t kWavHeaderSize = 44;

std::string EncodeWav(const int16_t* samples, size_t frames, int channels,
                      uint32_t sample_rate);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_WAV_ENCODER_H_
