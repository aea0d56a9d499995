# ccache for every C++ and CUDA compile. The sloppiness settings let ccache serve objects that use
# the precompiled torch header (it hashes the PCH's content, not its timestamps).
find_program(MOELAB_CCACHE ccache)
if(MOELAB_CCACHE)
    set(_moelab_launcher ${CMAKE_COMMAND} -E env
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        "CCACHE_BASEDIR=${PROJECT_SOURCE_DIR}" ${MOELAB_CCACHE})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_moelab_launcher})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${_moelab_launcher})
    message(STATUS "moelab: compiling through ccache (${MOELAB_CCACHE})")
endif()
