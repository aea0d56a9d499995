# Third-party dependencies, all from Debian packages (tools/setup.sh installs them) or, on GPU
# machines, the LibTorch inside the installed PyTorch (pass its cmake prefix in CMAKE_PREFIX_PATH).

find_package(Torch REQUIRED)
find_package(fmt REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
# Boost.DLL is header-only; we use its std::filesystem flavour so no Boost library is linked.
find_package(Boost 1.74 REQUIRED)
find_package(Threads REQUIRED)
# Compressed corpus files (.gz, .zst): core/data/document_reader.cpp.
find_package(ZLIB REQUIRED)
find_package(zstd CONFIG REQUIRED)

# LibTorch's own CMake sets flags through a variable rather than its target; wrap it once.
add_library(moelab_torch INTERFACE)
add_library(moelab::torch ALIAS moelab_torch)
target_link_libraries(moelab_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(moelab_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
separate_arguments(_moelab_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(moelab_torch INTERFACE ${_moelab_torch_flags})

# Whether this LibTorch has CUDA: part of the plugin build fingerprint.
include(MoelabTorchCuda)
moelab_detect_torch_cuda(MOELAB_TORCH_CUDA)
message(STATUS "moelab: LibTorch ${Torch_VERSION}, CUDA=${MOELAB_TORCH_CUDA}")

add_library(moelab_boost_dll INTERFACE)
target_link_libraries(moelab_boost_dll INTERFACE Boost::headers ${CMAKE_DL_LIBS})
target_compile_definitions(moelab_boost_dll INTERFACE BOOST_DLL_USE_STD_FS)

# toml++ is used header-only: only core/config includes it, and header-only use keeps the build
# independent of the C++ string ABI the Debian shared library was compiled with (a PyTorch wheel's
# LibTorch may use the old one).
add_library(moelab_toml INTERFACE)
get_target_property(_moelab_toml_includes tomlplusplus::tomlplusplus INTERFACE_INCLUDE_DIRECTORIES)
target_include_directories(moelab_toml SYSTEM INTERFACE ${_moelab_toml_includes})
target_compile_definitions(moelab_toml INTERFACE TOML_HEADER_ONLY=1 TOML_EXCEPTIONS=1)

# fmt: the compiled Debian library (its header-only mode costs ~6 s per translation unit), unless
#  - LibTorch's include directories carry their own fmt headers (PyTorch wheels bundle a newer fmt,
#    and its include directory comes first, so those headers are the ones compiled against), or
#  - LibTorch was built with the pre-C++11 string ABI, which the Debian library cannot link with.
# In both cases fmt is used header-only, consistent with whichever headers the compiler finds.
set(_moelab_fmt_header_only OFF)
foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
    if(EXISTS "${_dir}/fmt/core.h")
        set(_moelab_fmt_header_only ON)
    endif()
endforeach()
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
    set(_moelab_fmt_header_only ON)
endif()
add_library(moelab_fmt INTERFACE)
if(_moelab_fmt_header_only)
    target_link_libraries(moelab_fmt INTERFACE fmt::fmt-header-only)
    message(STATUS "moelab: fmt header-only (LibTorch bundles fmt or uses the old string ABI)")
else()
    target_link_libraries(moelab_fmt INTERFACE fmt::fmt)
endif()
