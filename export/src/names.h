// Names of the targeted linear maps in each format, and llama.cpp's q/k row
// permutation. Internal to export/.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "attune/adapters/adapter.h"

namespace attune::export_::internal {

// "self_attn.q_proj", ..., "mlp.down_proj" (transformers' Llama module paths).
std::string_view HfModulePath(adapters::LoraTarget t);
// "q_proj", ..., "down_proj": the leaf names PEFT's target_modules uses.
std::string_view HfLeafName(adapters::LoraTarget t);
// "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down".
std::string_view GgufName(adapters::LoraTarget t);

// llama.cpp's convert_hf_to_gguf.py LlamaModel.permute on the rows of a
// row-major [rows, cols] matrix: reshape(n_head, 2, rows/n_head/2, cols),
// swap axes 1 and 2. `inverse` undoes it (what the runtime does on load).
std::vector<float> PermuteRows(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t n_head, bool inverse);

// Milliseconds since the Unix epoch.
int64_t NowUnixMs();

}  // namespace attune::export_::internal
