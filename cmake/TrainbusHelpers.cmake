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

# trainbus_add_plugin(<name> SOURCES <files...> [LIBRARIES <libs...>])
#
# Builds a plugin as a MODULE library named libtrainbus_<name>.so in the
# build's plugin folder. Only the entry point is exported (version script):
# the plugin's own symbols can never clash with the host's or another
# plugin's. --no-undefined turns a missing symbol into a link error instead
# of a dlopen failure at run time.
function(trainbus_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  set(target trainbus_plugin_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE trainbus::plugin_sdk ${ARG_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME trainbus_${name}
    LIBRARY_OUTPUT_DIRECTORY "${TRAINBUS_BUILD_PLUGIN_DIR}")
  target_link_options(${target} PRIVATE
    "-Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/plugin.map"
    "-Wl,--no-undefined")
  install(TARGETS ${target} LIBRARY DESTINATION "${TRAINBUS_INSTALL_PLUGIN_DIR}")
  set_property(GLOBAL APPEND PROPERTY TRAINBUS_PLUGIN_TARGETS ${target})
endfunction()
