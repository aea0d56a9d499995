// Anchor translation unit of the precompiled torch header target (cmake/MoelabTorchPch.cmake).
