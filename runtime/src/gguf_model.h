// What both model loaders read from a GGUF file, with no LibTorch: the
// hyper-parameters (refusing what the forward pass does not implement), the
// tensors by name with their shapes checked and fingerprinted, projection
// matrices as blocks, norms as floats, RoPE tables, tokenizer and chat
// template. Model::Load (LibTorch) and LeanEngine both build on these.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/core/sha256.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/gguf.h"
#include "attune/runtime/lora_target.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/quant_matrix.h"
#include "attune/runtime/tokenizer.h"

namespace attune::runtime {

// A tensor as stored in the file: its type, bytes and PyTorch-order shape.
// `data` is null for an optional tensor that is absent.
struct RawTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  const uint8_t* data = nullptr;
  std::vector<int64_t> shape;
  bool present() const { return data != nullptr; }
};

// The hyper-parameters of `g` (file `path`). Unsupported architectures, RoPE
// scaling and sliding windows are refused with an error naming the key.
Result<ModelConfig> ReadGgufConfig(const GgufFile& g, const std::string& path);

// Tensor `name`, which must have `shape` (PyTorch order); its name and bytes
// go into `fingerprint`. Missing and not optional: DataLoss naming it.
Result<RawTensor> FetchGgufTensor(const GgufFile& g, const std::string& path, const std::string& name,
                                  const std::vector<int64_t>& shape, bool optional, Sha256* fingerprint);

// One tensor of a model and where it goes.
struct TensorSpec {
  enum class Role { kEmbed, kOutputNorm, kOutput, kAttnNorm, kFfnNorm, kProj, kBias };
  Role role = Role::kEmbed;
  int layer = -1;   // the layer of kAttnNorm, kFfnNorm, kProj and kBias
  int target = -1;  // kProj: its LoraTarget; kBias: kQ, kK or kV
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order
  bool optional = false;       // kOutput: absent when tied to the embedding
  // Heads whose rows a GGUF file stores permuted (see GgufPermutedHeads;
  // 0: none, and always 0 with Hugging Face names).
  int64_t unpermute_heads = 0;
};
// Every tensor of a model of config `c`, with GGUF's names or Hugging
// Face's, in the order the loaders fetch them, which is the order the
// fingerprint hashes them: the embedding, the output norm, the output
// matrix, then per layer its two norms, its projections (LoraTarget order)
// and, with c.qkv_bias, the Q, K and V biases.
std::vector<TensorSpec> ModelTensors(const ModelConfig& c, bool gguf_names);

// llama.cpp's convert script permutes the rows of Q and K of llama models so
// that its interleaved RoPE applies (convert_hf_to_gguf.py,
// LlamaModel.permute). We undo it and use the rotate-half RoPE of the Hugging
// Face implementation. Heads to un-permute for projection `target` of a GGUF
// file of this architecture (0: none).
int64_t GgufPermutedHeads(const ModelConfig& c, int target);
// Row (h, b, a) of the result is row (h, a, b) of the file, for head h,
// a < head_dim / 2 and b < 2.
int64_t UnpermutedSource(int64_t row, int64_t rows, int64_t n_head);

// The matrix `t` [rows, cols] as blocks: the file's bytes in place, or a
// copy when its rows are un-permuted (`unpermute_heads` > 0) or an fp32
// tensor is misaligned. DataLoss when the rows are not whole blocks.
Result<QuantMatrix> ToQuantMatrix(const RawTensor& t, int64_t unpermute_heads, const std::shared_ptr<const void>& owner,
                                  const std::string& file);
// A tensor's values as fp32 (norms, biases), rows un-permuted as above when
// `unpermute_heads` > 0 (a vector is a matrix of one column).
std::vector<float> ToFloats(const RawTensor& t, int64_t unpermute_heads = 0);

// Rotate-half RoPE tables (transformers' LlamaRotaryEmbedding), each
// [max(context_length, 1), head_dim / 2].
void RopeTables(const ModelConfig& c, std::vector<float>* cos, std::vector<float>* sin);

// The tokenizer (null when the file has none and `allow_missing_tokenizer`)
// and the chat template (null when none is recognised and no override is
// given) of `g`.
Status ReadGgufTextSide(const GgufFile& g, const std::string& path, const std::string& chat_override,
                        bool allow_missing_tokenizer, std::shared_ptr<const Tokenizer>* tokenizer,
                        std::shared_ptr<const ChatTemplate>* chat);

// Checks common to every loaded model: the tokenizer fits the embedding,
// the RMS epsilon and RoPE base are sane numbers.
Status CheckLoadedConfig(const ModelConfig& c, const Tokenizer* tokenizer, const std::string& path);

}  // namespace attune::runtime
