// The translation unit that builds the shared precompiled ATen header of one
// family of compile flags (cmake/torch.cmake, attune_torch_pch).
