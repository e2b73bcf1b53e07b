// PEFT interop: an adapter as the directory that Hugging Face PEFT's
// `save_pretrained` writes and `PeftModel.from_pretrained` reads:
//   adapter_config.json         LoraConfig (peft_type "LORA", r, lora_alpha,
//                               target_modules, use_rslora, ...)
//   adapter_model.safetensors   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
//                               ([r, in]) and ...lora_B.weight ([out, r]), also
//                               mlp.{gate,up,down}_proj
// (peft/tuners/lora/config.py; peft/utils/save_and_load.py). Only what our
// runtime computes is accepted: options PEFT has and we cannot honour are
// refused by name, never dropped.
//
// Thread safety: free functions without shared state.
#pragma once

#include <string>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/export/base_model.h"

namespace attune::export_ {

inline constexpr char kPeftConfigFile[] = "adapter_config.json";
inline constexpr char kPeftWeightsFile[] = "adapter_model.safetensors";

// Writes `adapter` into directory `dir` (created if missing; existing files
// of these two names are replaced atomically, config last). A target that is
// absent in some layers is written as zero matrices there, which PEFT applies
// as no change. InvalidArgument: the adapter is invalid. On failure no file
// of `dir` is half-written.
Status WritePeft(const adapters::Adapter& adapter, const BaseModel& base, const std::string& dir);

// Reads a PEFT LoRA directory (or the path of its adapter_config.json) into
// an adapter for `base` (stamped with base.info). Errors name the file and
// the field or tensor:
//   Unsupported      peft_type other than LORA, use_dora, non-trivial
//                    rank_pattern/alpha_pattern, modules_to_save, bias other
//                    than "none", fan_in_fan_out, embedding or lm_head LoRA,
//                    target_modules as a regex, unknown target modules;
//   FailedPrecondition  a tensor whose widths or layer do not fit `base`;
//   DataLoss         truncated or malformed files, a tensor whose rank
//                    differs from the config's r, a lora_A without lora_B;
//   InvalidArgument  NaN or Inf in a tensor.
Result<adapters::Adapter> ReadPeft(const std::string& path, const BaseModel& base);

}  // namespace attune::export_
