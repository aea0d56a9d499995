# One precompiled header for the LibTorch headers moelab uses, built once and reused by every
# torch-heavy target through moelab_reuse_torch_pch(). A translation unit drops from ~30 s to ~5 s
# on the 2-core CI machines. The header set is deliberately narrower than <torch/torch.h>: the whole
# umbrella makes a 600 MB PCH that is slower to load than it saves, so only what nearly every
# torch-using file needs is in it.
#
# REUSE_FROM requires identical compile flags and definitions; every consumer links moelab::sdk,
# which carries them (MOELAB_TORCH_CUDA, LibTorch's ABI flag), and the top-level CMakeLists.txt
# sets PIC and visibility for all targets alike.
add_library(moelab_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp)
target_link_libraries(moelab_torch_pch PUBLIC moelab::sdk)
target_precompile_headers(moelab_torch_pch PRIVATE
    <ATen/ATen.h>
    <torch/nn/module.h>
    <torch/autograd.h>)

# Sources that do not include LibTorch skip the PCH: loading it costs seconds per file.
function(moelab_torch_free_sources)
    set_source_files_properties(${ARGN} DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
                                PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
endfunction()

function(moelab_reuse_torch_pch target)
    target_precompile_headers(${target} REUSE_FROM moelab_torch_pch)
endfunction()
