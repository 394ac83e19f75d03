# Helpers shared by the framework, the bundled plugins and the tests.

# Shared precompiled headers.
#
#   trainbus_define_pch(<anchor> PROGRAM|LIBRARY
#                       HEADERS <header>... [LINK <lib>...] [OPTIONS <flag>...])
#   trainbus_reuse_pch(<target> <anchor>)
#
# An anchor is a target that only makes a precompiled header of HEADERS (from
# cmake/torch_pch.cc, linked with LINK, compiled with OPTIONS); its users
# reuse that header instead of each parsing the same LibTorch headers. GCC
# uses a PCH only in a translation unit compiled with the same flags, and
# ignores a mismatched one with a warning: so an anchor is a program (-fPIE)
# for programs, or an object library with position-independent code (-fPIC)
# for shared libraries and plugins, and it takes the OPTIONS its users add
# (the tests' -O0). Define an anchor where the settings its users inherit are
# set (trainbus_reuse_pch refuses a program anchor for a library). Anchors
# are left out of `all`: a header is made only when a user is built.
function(trainbus_define_pch anchor kind)
  cmake_parse_arguments(PARSE_ARGV 2 _pch "" "" "HEADERS;LINK;OPTIONS")
  set(_source "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/torch_pch.cc")
  if(kind STREQUAL "PROGRAM")
    add_executable(${anchor} EXCLUDE_FROM_ALL "${_source}")
  elseif(kind STREQUAL "LIBRARY")
    add_library(${anchor} OBJECT EXCLUDE_FROM_ALL "${_source}")
    set_target_properties(${anchor} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  else()
    message(FATAL_ERROR "trainbus_define_pch(${anchor}): kind is PROGRAM or LIBRARY, not '${kind}'")
  endif()
  target_link_libraries(${anchor} PRIVATE ${_pch_LINK})
  target_compile_options(${anchor} PRIVATE ${_pch_OPTIONS})
  target_precompile_headers(${anchor} PRIVATE ${_pch_HEADERS})
endfunction()

function(trainbus_reuse_pch target anchor)
  get_target_property(_anchor_type ${anchor} TYPE)
  get_target_property(_type ${target} TYPE)
  if(_anchor_type STREQUAL "EXECUTABLE" AND NOT _type STREQUAL "EXECUTABLE")
    message(FATAL_ERROR "${target} is a ${_type}: it cannot reuse ${anchor}, a program's PCH (-fPIE)")
  endif()
  target_precompile_headers(${target} REUSE_FROM ${anchor})
endfunction()

# Programs whose sources include all of <torch/torch.h> (16-20 s per
# translation unit; through the PCH a few seconds).
trainbus_define_pch(trainbus_torch_pch PROGRAM HEADERS <torch/torch.h> LINK torch)
function(trainbus_use_torch_pch target)
  trainbus_reuse_pch(${target} trainbus_torch_pch)
endfunction()

# Libraries and plugins whose sources work on tensors and modules: ATen's
# operators and torch::nn::Module, what those sources include in common. A
# source that needs neither opts out with SKIP_PRECOMPILE_HEADERS.
trainbus_define_pch(trainbus_torch_lib_pch LIBRARY
  HEADERS <ATen/ATen.h> <torch/nn/module.h> LINK torch)
function(trainbus_use_torch_lib_pch target)
  trainbus_reuse_pch(${target} trainbus_torch_lib_pch)
endfunction()

# Inside this tree, trainbus_add_plugin() puts plugins into the build's
# plugin folder and installs them into <libdir>/trainbus/plugins.
set(TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR "${TRAINBUS_BUILD_PLUGIN_DIR}")
set(TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR "${TRAINBUS_INSTALL_PLUGIN_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/TrainbusPlugin.cmake")
