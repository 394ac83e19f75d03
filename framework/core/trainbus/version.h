// trainbus/version.h — the versions a plugin is checked against at load time.
//
// TRAINBUS_PLUGIN_API_VERSION changes whenever Plugin, Control, the events or
// the records change in a way that breaks a compiled plugin; the loader
// refuses plugins built against another value.
#ifndef TRAINBUS_VERSION_H_
#define TRAINBUS_VERSION_H_

#include <cstddef>           // defines _GLIBCXX_USE_CXX11_ABI
#include <torch/version.h>  // tiny: only the TORCH_VERSION_* macros

#define TRAINBUS_VERSION_STRING "0.1.0"
#define TRAINBUS_PLUGIN_API_VERSION 6u  // 6: IterationEndEvent::compute_seconds; 5: PluginState in the core

#define TRAINBUS_STRINGIZE_(x) #x
#define TRAINBUS_STRINGIZE(x) TRAINBUS_STRINGIZE_(x)

// "major.minor" of the LibTorch headers: patch releases keep the ABI.
#define TRAINBUS_TORCH_VERSION \
  TRAINBUS_STRINGIZE(TORCH_VERSION_MAJOR) "." TRAINBUS_STRINGIZE(TORCH_VERSION_MINOR)

#ifdef _GLIBCXX_USE_CXX11_ABI
#define TRAINBUS_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#else
#define TRAINBUS_CXX11_ABI -1
#endif

#if defined(__clang__)
#define TRAINBUS_COMPILER_ID "Clang " __clang_version__
#elif defined(__GNUC__)
#define TRAINBUS_COMPILER_ID "GCC " __VERSION__
#else
#define TRAINBUS_COMPILER_ID "unknown"
#endif

#endif  // TRAINBUS_VERSION_H_
