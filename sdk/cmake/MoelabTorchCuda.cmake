# Sets ${out_var} to 1 when the LibTorch found by find_package(Torch) was built with CUDA, else 0.
# Part of the build fingerprint host and plugins must agree on.
function(moelab_detect_torch_cuda out_var)
    if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
        set(${out_var} 1 PARENT_SCOPE)
    else()
        set(${out_var} 0 PARENT_SCOPE)
    endif()
endfunction()
