# trainbus_add_plugin(<name> SOURCES <files...> [LIBRARIES <libs...>]
#                     [OUTPUT_DIRECTORY <dir>] [INSTALL_DESTINATION <dir>])
#
# Builds a trainbus plugin: a MODULE library named libtrainbus_<name>.so that
# the trainbus loader finds by the plugin's name. Only the entry point
# `trainbus_plugin_descriptor` is exported (linker version script), so the
# plugin's own symbols never clash with the host's or another plugin's, and
# --no-undefined turns a missing symbol into a link error instead of a dlopen
# failure at run time. Works inside the trainbus tree and, after
# find_package(trainbus), in any project. Without OUTPUT_DIRECTORY the library
# lands in ${TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR} if set, else the current
# binary folder; without INSTALL_DESTINATION it is installed only when
# ${TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR} is set.
set(TRAINBUS_PLUGIN_MAP "${CMAKE_CURRENT_LIST_DIR}/plugin.map" CACHE INTERNAL "")

function(trainbus_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY;INSTALL_DESTINATION" "SOURCES;LIBRARIES" ${ARGN})
  set(target trainbus_plugin_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE trainbus::plugin_sdk ${ARG_LIBRARIES})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME trainbus_${name})
  if(NOT ARG_OUTPUT_DIRECTORY AND TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR)
    set(ARG_OUTPUT_DIRECTORY "${TRAINBUS_DEFAULT_PLUGIN_OUTPUT_DIR}")
  endif()
  if(NOT ARG_INSTALL_DESTINATION AND TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR)
    set(ARG_INSTALL_DESTINATION "${TRAINBUS_DEFAULT_PLUGIN_INSTALL_DIR}")
    # Installed next to libtrainbus_framework.so: <libdir>/trainbus/plugins.
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
  target_link_options(${target} PRIVATE
    "-Wl,--version-script=${TRAINBUS_PLUGIN_MAP}"
    "-Wl,--no-undefined")
  if(ARG_INSTALL_DESTINATION)
    install(TARGETS ${target} LIBRARY DESTINATION "${ARG_INSTALL_DESTINATION}")
  endif()
  set_property(GLOBAL APPEND PROPERTY TRAINBUS_PLUGIN_TARGETS ${target})
endfunction()
