// The model: frozen base weights, tokenizer, chat template, and the
// functional forward pass `Forward(model, lora_or_null, tokens, cache)`.
//
// This header exposes ATen tensors and is meant for the LibTorch modules
// (runtime, trainer). Applications use engine.h, which has no LibTorch types.
//
// Thread safety: a Model is immutable after Load; Forward may run from many
// threads at once with distinct caches.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/linear_weight.h"
#include "attune/runtime/lora_target.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/plain_weights.h"
#include "attune/runtime/tokenizer.h"

namespace attune::runtime {

// LoraTarget and kNumLoraTargets live in lora_target.h.
const char* LoraTargetName(int target);

// LoRA tensors for one forward pass: for each layer and target either
// undefined tensors (not adapted) or A [r, in] and B [out, r].
struct LoraWeights {
  struct Pair {
    at::Tensor a, b;
  };
  double scale = 1.0;  // computed by LoraScale(), nowhere else
  // Dropout on the LoRA input (PEFT's lora_dropout), applied only while
  // `training`. Default: 0.
  double dropout = 0.0;
  bool training = false;
  std::vector<std::array<Pair, kNumLoraTargets>> layers;
  // When set, called with every projection's input x [batch, seq, in]
  // before the product (adapted or not): the trainer's statistics of the
  // activations an adapter must leave alone. `layers` must then hold an
  // entry per layer (undefined pairs for none adapted).
  const std::function<void(size_t layer, int target, const at::Tensor& x)>* observe = nullptr;
};

struct LayerWeights {
  at::Tensor attn_norm, ffn_norm;
  std::array<LinearWeight, kNumLoraTargets> proj;  // indexed by LoraTarget
  at::Tensor q_bias, k_bias, v_bias;               // undefined unless qkv_bias
};

// Keys and values of past positions, for one sequence (batch size 1).
struct KvCache {
  std::vector<at::Tensor> k, v;  // per layer [1, n_kv_heads, capacity, head_dim]
  int64_t length = 0;            // positions filled
  int64_t capacity = 0;
};

struct LoadOptions {
  // "chatml" or "llama3" overrides the template detected from the file.
  // Default: "" (detect).
  std::string chat_template;
  // Whether a file without tokenizer data is accepted (tests of the forward
  // pass on bare weights). Default: false.
  bool allow_missing_tokenizer = false;
  // How the projection, embedding and output matrices are held: the file's
  // quantized blocks (memory-mapped) or fp32. Norms and biases are always
  // fp32. Default: kQuantized.
  WeightStorage weights = WeightStorage::kQuantized;
};

class Model {
 public:
  // Loads a GGUF file or a Hugging Face directory (config.json +
  // safetensors + tokenizer.json). Errors name the file and the tensor or
  // key; nothing is left half-loaded.
  static Result<std::shared_ptr<const Model>> Load(const std::string& path, const LoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  // nullptr only when loaded with allow_missing_tokenizer and none was found.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const ChatTemplate* chat_template() const { return chat_.get(); }
  const std::string& path() const { return path_; }
  // Identifies the base weights (architecture, names, shapes and bytes):
  // adapters trained on one base refuse to load on another.
  const std::string& fingerprint() const { return fingerprint_; }
  int64_t parameter_count() const;

  const LinearWeight& embedding() const { return embed_; }  // [vocab, hidden]
  const LinearWeight& output() const { return output_; }
  const at::Tensor& output_norm() const { return out_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // cos/sin tables [max_positions, head_dim / 2].
  const at::Tensor& rope_cos() const { return rope_cos_; }
  const at::Tensor& rope_sin() const { return rope_sin_; }

  KvCache NewCache(int64_t capacity) const;

  // Merged mode: a model whose adapted projections hold W + scale·B·A in new
  // fp32 tensors, sharing everything else (embeddings, norms, untouched
  // projections, tokenizer) with this one. The base is never modified, so
  // generations on either model are unaffected by the other; "unmerging" is
  // dropping the merged model. Costs one extra copy of the adapted weights
  // (all seven targets of SmolLM2-135M: ~430 MB) and the time to fold;
  // decoding with it costs nothing extra.
  std::shared_ptr<const Model> WithMergedAdapter(const LoraWeights& lora) const;

 private:
  friend class ModelLoader;
  Model() = default;
  ModelConfig config_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<const ChatTemplate> chat_;
  std::string path_, fingerprint_;
  at::Tensor out_norm_;
  LinearWeight embed_, output_;
  std::vector<LayerWeights> layers_;
  at::Tensor rope_cos_, rope_sin_;
};

struct ForwardOptions {
  // Only compute logits for the last position (generation). Default: false.
  bool last_logits_only = false;
};

// tokens: int64 [batch, seq]. With a cache (batch must be 1) the tokens
// continue the cached positions and their keys/values are appended.
// Returns float logits [batch, seq or 1, vocab].
// REQUIRES: token ids < vocab_size; cache has room for seq more positions.
at::Tensor Forward(const Model& model, const LoraWeights* lora, const at::Tensor& tokens, KvCache* cache,
                   const ForwardOptions& options = {});

// The pieces of Forward, for callers that run layers one at a time (the
// trainer's per-layer gradient checkpointing recomputes a layer from its
// input). Forward == HeadForward(LayerForward(...LayerForward(EmbedTokens))).
struct AttentionContext {
  at::Tensor cos, sin;  // [seq, head_dim / 2] for the new positions
  at::Tensor mask;      // additive causal mask [groups * seq, past + seq], undefined for seq == 1
  int64_t past = 0;     // positions already in the cache
};
AttentionContext MakeAttentionContext(const Model& model, int64_t past, int64_t seq);
at::Tensor EmbedTokens(const Model& model, const at::Tensor& tokens);
// Token sequences in batches of up to `max_batch` of similar lengths (the
// shortest first), padded on the right with id 0: causal attention keeps the
// padding out of every real position, so a no-cache pass over a batch gives
// each sequence's rows as a pass over it alone would (up to the order in
// which products sum). Empty sequences are left out.
struct PaddedBatch {
  at::Tensor tokens;            // int64 [members.size(), length]
  std::vector<size_t> members;  // the sequence (its index in the input) of each row
  int64_t length = 0;
};
std::vector<PaddedBatch> PadInBatches(const std::vector<std::vector<int64_t>>& sequences, size_t max_batch);
// What a checkpointed first pass may keep of a layer for LayerBackward: the
// MLP's gate and up products rounded to bf16 ([.., intermediate] each).
// Kept only under Bf16Products with a quantized gate and up and no graph
// (kept() says whether); the pass that keeps them computes its SwiGLU from
// the rounded values, as LayerBackward will (autocast rounds these products
// to bf16 as well). Costs 4 bytes per token and intermediate unit per layer.
struct LayerKeep {
  at::Tensor gate, up;
  bool kept() const { return gate.defined(); }
};
// x [batch, seq, hidden] -> [batch, seq, hidden]. With a cache, appends this
// layer's keys/values at ctx.past (the caller advances cache->length). With
// `keep`, fills it where it can (see LayerKeep).
at::Tensor LayerForward(const Model& model, const LoraWeights* lora, size_t layer, const at::Tensor& x,
                        const AttentionContext& ctx, KvCache* cache, LayerKeep* keep = nullptr);
// Backward through layer `layer` for per-layer gradient checkpointing:
// recomputes it from its input x with a graph, backpropagates grad (dL/d
// its output) into the LoRA tensors' gradients, and returns dL/dx (undefined
// without input_grad). Faster than LayerForward then backward under bf16
// products: the frozen part of the MLP's down projection, whose value
// backward never reads, is not computed, nor those of gate and up when
// `kept` holds them (for targets with a LoRA). No cache.
at::Tensor LayerBackward(const Model& model, const LoraWeights* lora, size_t layer, const at::Tensor& x,
                         const AttentionContext& ctx, const at::Tensor& grad, bool input_grad = true,
                         const LayerKeep* kept = nullptr);
// A batch of `batch` rows of T tokens whose first `prefix` tokens are the
// same in every row (the chat template's system turn), laid out as prefix +
// batch * rest rows of hidden states [N, hidden]: the prefix's positions
// once, then each row's own. A causal layer gives every row's prefix
// positions the same values, so the layers run the prefix once, for
// (batch - 1) * prefix fewer rows through every projection; each row's own
// positions attend to the prefix's keys and values as to their own earlier
// positions. No cache.
struct SharedPrefix {
  int64_t batch = 0, prefix = 0, rest = 0;  // rest = T - prefix
  AttentionContext prefix_ctx, rest_ctx;    // past 0, seq prefix; past prefix, seq rest
};
// REQUIRES: 0 < prefix < seq.
SharedPrefix MakeSharedPrefix(const Model& model, int64_t batch, int64_t prefix, int64_t seq);
// The rows of tokens [batch, T] (row 0's prefix, then each row's rest).
at::Tensor EmbedShared(const Model& model, const at::Tensor& tokens, const SharedPrefix& s);
// Rows back to [batch, T, hidden], the prefix's repeated in every row (their
// gradients sum into the prefix's rows).
at::Tensor UnshareRows(const at::Tensor& rows, const SharedPrefix& s);
// The shortest prefix worth running once for a batch.
inline constexpr int64_t kMinSharedPrefix = 8;
// How many leading positions of tokens [B, T] every row has in common from
// the start (row 0's tokens), at most T - 1; 0 when under kMinSharedPrefix
// or for a single row. Sharing may reach into a row's right padding: a
// causal layer gives its padded positions the values of the same tokens.
int64_t CommonPrefixLength(const at::Tensor& tokens);
// The hidden states [B, T, hidden] after the last layer (before the head's
// norm) of tokens [B, T], or after the first `n_layers` layers when it is
// above 0, without a graph; a common prefix (CommonPrefixLength) runs once.
// lora may be null; with LoRA dropout in training nothing is shared.
at::Tensor HiddenStates(const Model& model, const LoraWeights* lora, const at::Tensor& tokens, int64_t n_layers = 0);
// LayerForward and LayerBackward over such rows: the same values as over
// the batch [batch, T] (up to the order in which products sum). With LoRA
// dropout the prefix's rows share their masks, unlike the batch's.
at::Tensor LayerForwardShared(const Model& model, const LoraWeights* lora, size_t layer, const at::Tensor& rows,
                              const SharedPrefix& s, LayerKeep* keep = nullptr);
at::Tensor LayerBackwardShared(const Model& model, const LoraWeights* lora, size_t layer, const at::Tensor& rows,
                               const SharedPrefix& s, const at::Tensor& grad, bool input_grad = true,
                               const LayerKeep* kept = nullptr);
// Final norm and output projection: [batch, seq, hidden] -> [batch, seq, vocab].
// HeadForward(x) == model.output().Mul(HeadNorm(x)); the trainer runs the
// projection itself, a chunk of rows at a time.
at::Tensor HeadForward(const Model& model, const at::Tensor& x);
at::Tensor HeadNorm(const Model& model, const at::Tensor& x);

// Views (plain_weights.h) of the model, an adapter (null: none) and a cache
// for the lean forward pass (ForwardRows). False when that pass cannot serve
// them: a LoRA in training mode or whose tensors are not dense fp32, a cache
// that is not contiguous fp32. The views point into their arguments.
bool PlainViews(const Model& model, const LoraWeights* lora, KvCache* cache, PlainWeights* weights, PlainLora* plain_lora,
                PlainCache* plain_cache);

// Sets LibTorch's intra-op threads, and OpenBLAS's and the decode kernels' threads. 0 keeps a
// library's default. See docs/runtime.md for why the default is (1, cores).
void ConfigureThreads(int torch_threads, int blas_threads);

// While it lives, LibTorch has `torch_threads` intra-op threads and
// OpenBLAS `blas_threads` (a count <= 0 leaves that one alone); the
// destructor restores both. Process-wide, as the libraries' own settings
// are; the decode kernels' pool is left alone.
class ThreadsScope {
 public:
  ThreadsScope(int torch_threads, int blas_threads);
  ~ThreadsScope();
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int torch_ = 0, blas_ = 0;
};

// For work whose large products run on LibTorch's intra-op threads (the
// trainer's bf16 base): while it lives, LibTorch gets as many intra-op
// threads as OpenBLAS had, and OpenBLAS runs on the calling thread (two
// spinning pools on the same cores slow both down). The decode kernels' pool
// is left alone. The destructor restores both counts. Process-wide, as the
// libraries' own settings are.
class LibTorchProductsThreads {
 public:
  LibTorchProductsThreads();

 private:
  ThreadsScope scope_;
};

}  // namespace attune::runtime
