// BaseModel: what the export formats need to know about the base model an
// adapter is applied to, beyond adapters::BaseModelInfo.
//
// The namespace is attune::export_ because `export` is a C++ keyword.
#pragma once

#include <cstdint>
#include <string>

#include "attune/adapters/adapter.h"

namespace attune::export_ {

struct BaseModel {
  // Fingerprint, architecture, layer count and target widths (the runtime
  // fills it: runtime::BaseInfo). Imported adapters are stamped with it.
  adapters::BaseModelInfo info;
  // Attention head counts. GGUF-LoRA files of Llama-family models hold the
  // q/k rows in llama.cpp's RoPE order, which depends on them. Default: 0
  // (unknown; GGUF-LoRA export/import of q/k then fails)
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  // Written as PEFT's base_model_name_or_path. Default: ""
  std::string name_or_path;
};

// Whether the q and k rows of `arch` are permuted in GGUF files
// (llama.cpp's convert_hf_to_gguf.py permutes llama and mistral, not qwen2).
bool GgufPermutesQk(const std::string& arch);

}  // namespace attune::export_
