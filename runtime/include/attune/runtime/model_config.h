// Hyper-parameters of a Llama-family model, always read from the model file
// (GGUF metadata or config.json), never from constants.
#pragma once

#include <cstdint>
#include <string>

namespace attune::runtime {

enum class Architecture { kLlama, kQwen2, kMistral };

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;      // as the file names it ("llama", "qwen2", "mistral")
  std::string name;           // general.name or the directory name
  int64_t vocab_size = 0;
  int64_t hidden = 0;         // embedding width
  int64_t intermediate = 0;   // SwiGLU width
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;     // < n_heads: grouped-query attention
  int64_t head_dim = 0;
  int64_t context_length = 0;
  double rope_theta = 10000.0;
  double rope_linear_scale = 1.0;  // positions are divided by this (rope_scaling type "linear")
  double rms_eps = 1e-5;
  bool tied_embeddings = false;
  bool qkv_bias = false;      // qwen2
};

// How base weights are held in memory (LoadOptions, EngineOptions).
enum class WeightStorage {
  kQuantized,  // the file's blocks, memory-mapped (fp32/fp16/bf16 files: as stored)
  kFp32,       // dequantized to fp32 at load
};

}  // namespace attune::runtime
