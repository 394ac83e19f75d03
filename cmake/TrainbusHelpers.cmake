# Helpers shared by the framework, the bundled plugins and the tests.

# trainbus_share_pch(<target> <anchor> PROGRAM|LIBRARY
#                    HEADERS <header>... [LINK <lib>...] [OPTIONS <flag>...])
#
# Makes <target> reuse the precompiled header that the target <anchor> makes
# of HEADERS, creating <anchor> on first use (from cmake/torch_pch.cc, linked
# with LINK and compiled with OPTIONS). GCC uses a PCH only in a translation
# unit compiled with the same flags, and ignores a mismatched one with a
# warning: so the anchor is a program (-fPIE) for programs and an object
# library with position-independent code (-fPIC) for shared libraries and
# plugins, and it takes the OPTIONS its users add (the tests' -O0). One
# anchor per flag set; each user names its anchor through one of the three
# wrappers below, so every user of an anchor asks for the same headers.
function(trainbus_share_pch target anchor kind)
  cmake_parse_arguments(PARSE_ARGV 3 _pch "" "" "HEADERS;LINK;OPTIONS")
  get_target_property(_type ${target} TYPE)
  if(kind STREQUAL "PROGRAM" AND NOT _type STREQUAL "EXECUTABLE")
    message(FATAL_ERROR "${anchor}: ${target} is a ${_type}; only programs can share this PCH")
  endif()
  if(NOT TARGET ${anchor})
    if(kind STREQUAL "PROGRAM")
      add_executable(${anchor} "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/torch_pch.cc")
    elseif(kind STREQUAL "LIBRARY")
      add_library(${anchor} OBJECT "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/torch_pch.cc")
      set_target_properties(${anchor} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    else()
      message(FATAL_ERROR "trainbus_share_pch(${target} ${anchor}): kind is PROGRAM or LIBRARY, not '${kind}'")
    endif()
    target_link_libraries(${anchor} PRIVATE ${_pch_LINK})
    target_compile_options(${anchor} PRIVATE ${_pch_OPTIONS})
    target_precompile_headers(${anchor} PRIVATE ${_pch_HEADERS})
  endif()
  target_precompile_headers(${target} REUSE_FROM ${anchor})
endfunction()

# Programs whose sources include all of <torch/torch.h> (16-20 s per
# translation unit; through the PCH a few seconds).
function(trainbus_use_torch_pch target)
  trainbus_share_pch(${target} trainbus_torch_pch PROGRAM
    HEADERS <torch/torch.h> LINK torch)
endfunction()

# Libraries and plugins whose sources work on tensors and modules: ATen's
# operators and torch::nn::Module, what those sources include in common. A
# source that needs neither opts out with SKIP_PRECOMPILE_HEADERS.
function(trainbus_use_torch_lib_pch target)
  trainbus_share_pch(${target} trainbus_torch_lib_pch LIBRARY
    HEADERS <ATen/ATen.h> <torch/nn/module.h> LINK torch)
endfunction()

# Inside this tree, trainbus_add_plugin() puts plugins into the build's
# plugin folder and installs them into <libdir>/trainbus/plugins.
set(TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR "${TRAINBUS_BUILD_PLUGIN_DIR}")
set(TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR "${TRAINBUS_INSTALL_PLUGIN_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/TrainbusPlugin.cmake")
