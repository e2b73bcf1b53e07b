// GGUF-LoRA interop: an adapter as the file llama.cpp loads with
// `--lora FILE` (llama-adapter.cpp; written by convert_lora_to_gguf.py):
//   general.type = "adapter", general.architecture = the base's arch,
//   adapter.type = "lora", adapter.lora.alpha (float32),
//   tensors blk.N.attn_q.weight.lora_a [r, in] and .lora_b [out, r] (numpy
//   order; ggml's ne is reversed), also attn_k/attn_v/attn_output/ffn_*.
// llama.cpp's scale is alpha / r. For Llama-family bases the q/k rows of the
// base GGUF are permuted for llama.cpp's RoPE (the runtime undoes that on
// load), so lora_b of q and k is permuted the same way on export and back on
// import. An rsLoRA adapter is written with alpha * sqrt(r) so that llama.cpp's
// alpha / r equals our alpha / sqrt(r); it reads back as plain LoRA.
//
// Thread safety: free functions without shared state.
#pragma once

#include <string>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/export/base_model.h"

namespace attune::export_ {

// Writes `adapter` to `path` atomically. InvalidArgument: invalid adapter, or
// base.n_heads / n_kv_heads unknown or not dividing the q/k widths when q or
// k is adapted on a Llama-family base.
Status WriteGgufLora(const adapters::Adapter& adapter, const BaseModel& base, const std::string& path);

// Reads a GGUF-LoRA file into an adapter for `base`. Errors name the file and
// the key or tensor: DataLoss (not GGUF, truncated, missing keys, lora_a
// without lora_b, ranks that differ between tensors), Unsupported (not a LoRA
// adapter, tensor types other than F32/F16, unknown tensors),
// FailedPrecondition (architecture, layer or shapes that do not fit `base`),
// InvalidArgument (NaN or Inf).
Result<adapters::Adapter> ReadGgufLora(const std::string& path, const BaseModel& base);

}  // namespace attune::export_
