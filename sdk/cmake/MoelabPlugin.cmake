# moelab_add_plugin(<name> SOURCES <src>... [OUTPUT_DIRECTORY <dir>])
#
# Builds the plugin library moelab-plugin-<name>.so (CMake target `moelab-plugin-<name>`), the
# file name the host's plugin discovery looks for. The library:
#   - links moelab::sdk (LibTorch and the SDK headers, nothing else);
#   - hides every symbol (-fvisibility=hidden) and exports only `moelab_plugin_entry` through a
#     linker version script, so plugins cannot clash with each other or with the host;
#   - links with -z defs, so a missing symbol fails the build, not the user's run.

function(moelab_add_plugin name)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "OUTPUT_DIRECTORY" "SOURCES")
    if(NOT ARG_SOURCES)
        message(FATAL_ERROR "moelab_add_plugin(${name}): SOURCES is required")
    endif()
    if(NOT name MATCHES "^[a-z0-9][a-z0-9_-]*$")
        message(FATAL_ERROR "moelab_add_plugin(${name}): use lower-case letters, digits, '-' and '_'")
    endif()
    set(version_script "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/plugin.version")
    set(target moelab-plugin-${name})
    add_library(${target} MODULE ${ARG_SOURCES})
    target_link_libraries(${target} PRIVATE moelab::sdk)
    target_compile_features(${target} PRIVATE cxx_std_20)
    set_target_properties(${target} PROPERTIES
        PREFIX ""
        OUTPUT_NAME "moelab-plugin-${name}"
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        POSITION_INDEPENDENT_CODE ON)
    if(ARG_OUTPUT_DIRECTORY)
        set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
    endif()
    if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
        target_link_options(${target} PRIVATE
            "LINKER:--version-script=${version_script}"
            "LINKER:-z,defs")
        set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${version_script}")
    endif()
endfunction()
