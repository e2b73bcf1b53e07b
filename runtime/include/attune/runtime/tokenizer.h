// Tokenizer: text <-> token ids, as the model file defines them.
//
// Two algorithms:
//  - BPE with merge ranks (GPT-2 style byte-level BPE, used by SmolLM2,
//    Llama-3, Qwen2; also char-level BPE with byte fallback, as Hugging Face
//    tokenizer.json files of Llama-2-era models use).
//  - SentencePiece BPE by token score (GGUF `tokenizer.ggml.model = "llama"`),
//    with byte fallback (<0xXX> tokens).
// Pre-tokenization uses the regular expressions the file names (GGUF
// `tokenizer.ggml.pre`, or the Split/Digits/ByteLevel pre-tokenizers of a
// tokenizer.json), compiled with PCRE2 with Unicode properties. Special and
// added tokens in the text are matched before pre-tokenization (longest first).
//
// Thread safety: immutable after construction; Encode/Decode may be called
// concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attune/core/result.h"

namespace attune::runtime {

class GgufFile;

class Tokenizer {
 public:
  // Limits of Encode's input (a longer text is an InvalidArgument error).
  static constexpr size_t kMaxTextBytes = 16u << 20;

  static Result<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& gguf);
  // Reads a Hugging Face tokenizer.json (model type BPE).
  static Result<std::unique_ptr<Tokenizer>> FromHfJson(const std::string& path);

  virtual ~Tokenizer();

  // Encodes `text`. With `parse_special`, special/added token strings in the
  // text become their ids; otherwise they are tokenized as plain text.
  // Adds no BOS. Invalid UTF-8 is encoded byte by byte, never rejected.
  Result<std::vector<int32_t>> Encode(std::string_view text, bool parse_special = true) const;

  // Decodes ids to text (special tokens as their text). Out-of-range ids are
  // an InvalidArgument error.
  Result<std::string> Decode(const std::vector<int32_t>& ids) const;

  // The raw vocabulary string of `id` (e.g. "Ġthe"), for display.
  const std::string& Piece(int32_t id) const;
  // The bytes `id` stands for (a prefix of a UTF-8 sequence, possibly).
  std::string TokenBytes(int32_t id) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The regular expressions (applied in sequence) of a GGUF pre-tokenizer
// name; NotFound for an unknown name.
Result<std::vector<std::string>> PreTokenizerRegexes(const std::string& name);

}  // namespace attune::runtime
