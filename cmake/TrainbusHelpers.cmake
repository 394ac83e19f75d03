# Helpers shared by the framework, the bundled plugins and the tests.

# One precompiled header for the programs whose sources include all of
# <torch/torch.h> (16-20 s per TU; through the PCH a few seconds). A PCH is
# only used by a TU compiled with the same flags, and programs are built
# with -fPIE, libraries with -fPIC: so the PCH is made by a (dummy) program,
# and only programs use it (GCC ignores a mismatched one, with a warning).
function(trainbus_use_torch_pch target)
  get_target_property(_type ${target} TYPE)
  if(NOT _type STREQUAL "EXECUTABLE")
    message(FATAL_ERROR "trainbus_use_torch_pch(${target}): only programs can share the PCH")
  endif()
  if(NOT TARGET trainbus_torch_pch)
    add_executable(trainbus_torch_pch "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/torch_pch.cc")
    target_link_libraries(trainbus_torch_pch PRIVATE torch)
    target_precompile_headers(trainbus_torch_pch PRIVATE <torch/torch.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM trainbus_torch_pch)
endfunction()

# One precompiled header for the libraries and plugins whose sources work on
# tensors and modules (compiled with -fPIC, so the PCH is made by an object
# library of its own): ATen's operators and torch::nn::Module, what those
# sources include in common. A source that needs neither can opt out with
# the SKIP_PRECOMPILE_HEADERS source property.
function(trainbus_use_torch_lib_pch target)
  if(NOT TARGET trainbus_torch_lib_pch)
    add_library(trainbus_torch_lib_pch OBJECT "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/torch_pch.cc")
    set_target_properties(trainbus_torch_lib_pch PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(trainbus_torch_lib_pch PRIVATE torch)
    target_precompile_headers(trainbus_torch_lib_pch PRIVATE <ATen/ATen.h> <torch/nn/module.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM trainbus_torch_lib_pch)
endfunction()

# Inside this tree, trainbus_add_plugin() puts plugins into the build's
# plugin folder and installs them into <libdir>/trainbus/plugins.
set(TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR "${TRAINBUS_BUILD_PLUGIN_DIR}")
set(TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR "${TRAINBUS_INSTALL_PLUGIN_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/TrainbusPlugin.cmake")
