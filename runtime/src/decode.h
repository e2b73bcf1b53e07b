// The lean batch-1 decode step: one token through every layer over plain
// contiguous buffers (norms, RoPE, attention over the KV cache, SwiGLU, the
// unmerged LoRA's two small products), with the projections as quantized
// GEMVs. No LibTorch dispatch per operation; it gives the same numbers as
// Forward up to the 8-bit activation quantization of the GEMVs.
#pragma once

#include <vector>

#include "attune/runtime/model.h"

namespace attune::runtime {

// Buffers reused across the steps of one generation.
struct DecodeScratch {
  std::vector<float> x, h, q, k, v, att, gate, up, lora_tmp, lora_out, scores;
};

// Whether DecodeStep can serve this model and adapter (contiguous fp32 LoRA
// tensors, fp32 contiguous cache); otherwise callers use Forward.
bool LeanDecodeSupported(const Model& model, const LoraWeights* lora, const KvCache& cache);

// Appends `token` at position cache->length, advances the cache and writes
// the next-token logits [vocab] to `logits`.
// REQUIRES: LeanDecodeSupported; cache->length < cache->capacity.
void DecodeStep(const Model& model, const LoraWeights* lora, int32_t token, KvCache* cache, float* logits,
                DecodeScratch* scratch);

}  // namespace attune::runtime
