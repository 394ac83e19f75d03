# Helpers shared by the framework, the bundled plugins and the tests.

# One precompiled header for the translation units that build models or
# optimizers (<torch/torch.h> costs 16-20 s per TU; through the PCH ~9 s).
# Every target that uses it must be compiled with the same flags, which is
# why the whole tree is PIC and plugins get no extra visibility flags.
function(trainbus_use_torch_pch target)
  if(NOT TARGET trainbus_torch_pch)
    add_library(trainbus_torch_pch STATIC "${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc")
    target_link_libraries(trainbus_torch_pch PRIVATE torch)
    target_precompile_headers(trainbus_torch_pch PRIVATE <torch/torch.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM trainbus_torch_pch)
endfunction()

# Inside this tree, trainbus_add_plugin() puts plugins into the build's
# plugin folder and installs them into <libdir>/trainbus/plugins.
set(TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR "${TRAINBUS_BUILD_PLUGIN_DIR}")
set(TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR "${TRAINBUS_INSTALL_PLUGIN_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/TrainbusPlugin.cmake")
