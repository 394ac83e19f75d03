#include "trainbus/tensorboard/wav_encoder.h"

#include <cstring>

namespace trainbus::tensorboard {
namespace {

void Put16(uint16_t v, std::string* out) { out->append(reinterpret_cast<const char*>(&v), 2); }
void Put32(uint32_t v, std::string* out) { out->append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

std::string EncodeWav(const int16_t* samples, size_t frames, int channels,
                      uint32_t sample_rate) {
  const uint32_t data_bytes = static_cast<uint32_t>(frames * channels * 2);
  std::string out;
  out.reserve(kWavHeaderSize + data_bytes);
  out.append("RIFF");
  Put32(36 + data_bytes, &out);
  out.append("WAVE");
  out.append("fmt ");
  Put32(16, &out);                                          // fmt chunk size
  Put16(1, &out);                                           // PCM
  Put16(static_cast<uint16_t>(channels), &out);             // channels
  Put32(sample_rate, &out);                                 // frames per second
  Put32(sample_rate * static_cast<uint32_t>(channels) * 2, &out);  // bytes per second
  Put16(static_cast<uint16_t>(channels * 2), &out);         // block align
  Put16(16, &out);                                          // bits per sample
  out.append("data");
  Put32(data_bytes, &out);
  out.append(reinterpret_cast<const char*>(samples), data_bytes);
  return out;
}

}  // namespace trainbus::tensorboard
