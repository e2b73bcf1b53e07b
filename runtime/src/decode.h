// The lean forward pass: tokens through every layer over plain contiguous
// buffers (norms, RoPE, causal attention over the KV cache, SwiGLU, the
// unmerged LoRA's two small products), with the projections as quantized
// products (8-bit activations, integer dot products). No LibTorch: the
// decode step of every generation, and the whole of a LibTorch-free one
// (LeanModel). Forward (model.h) gives the same numbers up to the 8-bit
// activation quantization of the products.
#pragma once

#include <vector>

#include "attune/runtime/plain_weights.h"

namespace attune::runtime {

// Buffers reused across the calls of one generation.
struct DecodeScratch {
  std::vector<float> x, h, q, k, v, att, gate, up, lora_tmp, lora_out;
};

// Runs tokens[0, n) at positions cache->length … through the model, appends
// their keys and values, advances the cache and writes the next-token
// logits of the last one to `logits` [vocab]. n == 1 is a decode step.
// REQUIRES: n >= 1; cache->length + n <= cache->capacity; ids < vocab.
void ForwardRows(const PlainWeights& model, const PlainLora* lora, const int32_t* tokens, int64_t n, PlainCache* cache,
                 float* logits, DecodeScratch* scratch);

// The base model's hidden state after its first `layers` layers (no
// adapter), averaged over tokens[1, n), or tokens[0] alone when n == 1:
// what an adapter's scope reads (runtime/scope.h), [hidden]. Fills the
// cache's first `layers` layers from position cache->length on.
// REQUIRES: n >= 1; 1 <= layers <= n_layers; cache->length + n <= capacity.
std::vector<float> MeanHiddenState(const PlainWeights& model, const int32_t* tokens, int64_t n, int64_t layers,
                                   PlainCache* cache, DecodeScratch* scratch);

}  // namespace attune::runtime
