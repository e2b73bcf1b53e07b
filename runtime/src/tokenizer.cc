#include "attune/runtime/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "attune/core/file.h"
#include "attune/runtime/gguf.h"

namespace attune::runtime {
namespace {

// GPT-2's pre-tokenizer (tokenizers' ByteLevel with use_regex).
const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum class Algo { kBpeByteLevel, kBpeChars, kSpm };

// GGUF token types (llama.cpp's llama_token_type).
enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// bytes_to_unicode() of GPT-2's encoder.py: printable bytes map to themselves,
// the rest to U+0100 onwards.
struct ByteMap {
  std::string byte_to_utf8[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
      byte_to_utf8[b] = EncodeUtf8(cp);
      cp_to_byte[cp] = uint8_t(b);
    }
  }
  static std::string EncodeUtf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | (cp >> 18));
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
    return s;
  }
};

const ByteMap& ByteTable() {
  static const ByteMap m;
  return m;
}

// Length of the UTF-8 sequence starting at s[i], 1 for an invalid byte.
size_t Utf8Len(std::string_view s, size_t i) {
  unsigned char c = s[i];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  }
  return n;
}

// Decodes one code point at s[i] (assumes valid UTF-8 of length Utf8Len).
uint32_t DecodeCp(std::string_view s, size_t i, size_t n) {
  unsigned char c = s[i];
  if (n == 1) return c;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

class Regex {
 public:
  static Result<std::unique_ptr<Regex>> Compile(const std::string& pattern) {
    int err;
    PCRE2_SIZE off;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      return InvalidArgumentError("pre-tokenizer regex /" + pattern + "/ does not compile at offset " +
                                  std::to_string(off) + ": " + reinterpret_cast<char*>(buf));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: falls back to the interpreter
    return std::unique_ptr<Regex>(new Regex(code));
  }
  ~Regex() { pcre2_code_free(code_); }

  // Splits `text` into matches and the gaps between them (tokenizers' Split
  // with behavior "isolated"); appends the pieces to `out`.
  void Split(std::string_view text, std::vector<std::string_view>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0, last = 0;
    while (pos <= text.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, md, nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step one character
        pos = b + (b < text.size() ? Utf8Len(text, b) : 1);
        continue;
      }
      if (b > last) out->push_back(text.substr(last, b - last));
      out->push_back(text.substr(b, e - b));
      last = pos = e;
    }
    if (last < text.size()) out->push_back(text.substr(last));
    pcre2_match_data_free(md);
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

}  // namespace

struct Tokenizer::Impl {
  Algo algo = Algo::kBpeByteLevel;
  std::vector<std::string> tokens;
  std::vector<int> types;
  std::vector<float> scores;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::unordered_map<std::string, int32_t> merge_rank;  // "a b" -> rank
  std::vector<std::unique_ptr<Regex>> pre;
  std::vector<int32_t> specials_by_len;  // ids of matchable special tokens, longest first
  std::optional<int32_t> bos, eos, unk;
  bool add_bos = false;
  bool add_space_prefix = false;  // SPM / Metaspace prepend
  bool byte_fallback = false;
  int32_t byte_token[256];  // <0xXX> ids, -1 when absent

  Status Finish() {
    if (tokens.empty()) return InvalidArgumentError("tokenizer has an empty vocabulary");
    types.resize(tokens.size(), kNormal);
    for (size_t i = 0; i < tokens.size(); ++i) token_to_id.emplace(tokens[i], int32_t(i));
    for (size_t i = 0; i < tokens.size(); ++i) {
      if ((types[i] == kControl || types[i] == kUserDefined) && !tokens[i].empty()) {
        specials_by_len.push_back(int32_t(i));
      }
    }
    std::stable_sort(specials_by_len.begin(), specials_by_len.end(),
                     [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      auto it = token_to_id.find(buf);
      byte_token[b] = it == token_to_id.end() ? -1 : it->second;
    }
    for (auto id : {bos, eos, unk}) {
      if (id && (*id < 0 || *id >= int32_t(tokens.size()))) {
        return InvalidArgumentError("special token id " + std::to_string(*id) + " is outside the vocabulary of " +
                                    std::to_string(tokens.size()));
      }
    }
    return Status::Ok();
  }

  Status SetRegexes(const std::vector<std::string>& patterns) {
    for (const auto& p : patterns) {
      ASSIGN_OR_RETURN(auto re, Regex::Compile(p));
      pre.push_back(std::move(re));
    }
    return Status::Ok();
  }

  void EmitUnknown(std::string_view sym, std::vector<int32_t>* out) const {
    if (byte_fallback) {
      bool all = true;
      for (unsigned char c : sym) all = all && byte_token[c] >= 0;
      if (all) {
        for (unsigned char c : sym) out->push_back(byte_token[c]);
        return;
      }
    }
    if (unk) out->push_back(*unk);
  }

  // BPE by merge rank over `symbols` (each a vocabulary-alphabet string).
  void BpeRanks(std::vector<std::string> symbols, std::vector<int32_t>* out) const {
    while (symbols.size() > 1) {
      int best = INT_MAX;
      size_t best_i = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merge_rank.find(symbols[i] + " " + symbols[i + 1]);
        if (it != merge_rank.end() && it->second < best) {
          best = it->second;
          best_i = i;
        }
      }
      if (best == INT_MAX) break;
      // Merge every occurrence of the best pair, left to right (GPT-2's bpe()).
      std::string a = symbols[best_i], b = symbols[best_i + 1];
      std::vector<std::string> next;
      next.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size();) {
        if (i + 1 < symbols.size() && symbols[i] == a && symbols[i + 1] == b) {
          next.push_back(a + b);
          i += 2;
        } else {
          next.push_back(std::move(symbols[i]));
          ++i;
        }
      }
      symbols = std::move(next);
    }
    for (const auto& s : symbols) {
      auto it = token_to_id.find(s);
      if (it != token_to_id.end()) out->push_back(it->second);
      else EmitUnknown(s, out);
    }
  }

  // SentencePiece BPE (llama.cpp's llm_tokenizer_spm): repeatedly merge the
  // adjacent pair whose concatenation is in the vocabulary with the highest
  // score, leftmost first on ties.
  void BpeScores(std::string_view text, std::vector<int32_t>* out) const {
    std::vector<std::string> sym;
    for (size_t i = 0; i < text.size();) {
      size_t n = Utf8Len(text, i);
      sym.emplace_back(text.substr(i, n));
      i += n;
    }
    while (sym.size() > 1) {
      float best = -1e30f;
      size_t best_i = SIZE_MAX;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = token_to_id.find(sym[i] + sym[i + 1]);
        if (it != token_to_id.end() && scores[it->second] > best) {
          best = scores[it->second];
          best_i = i;
        }
      }
      if (best_i == SIZE_MAX) break;
      sym[best_i] += sym[best_i + 1];
      sym.erase(sym.begin() + best_i + 1);
    }
    for (const auto& s : sym) {
      auto it = token_to_id.find(s);
      if (it != token_to_id.end()) out->push_back(it->second);
      else EmitUnknown(s, out);
    }
  }

  void EncodePlain(std::string_view text, std::vector<int32_t>* out) const {
    if (text.empty()) return;
    if (algo == Algo::kSpm) {
      std::string s;
      if (add_space_prefix) s = "\xE2\x96\x81";
      for (char c : text) {
        if (c == ' ') s += "\xE2\x96\x81";
        else s += c;
      }
      BpeScores(s, out);
      return;
    }
    std::vector<std::string_view> pieces{text};
    for (const auto& re : pre) {
      std::vector<std::string_view> next;
      for (auto p : pieces) re->Split(p, &next);
      pieces = std::move(next);
    }
    for (auto piece : pieces) {
      std::vector<std::string> symbols;
      if (algo == Algo::kBpeByteLevel) {
        for (unsigned char c : piece) symbols.push_back(ByteTable().byte_to_utf8[c]);
      } else {
        std::string s;
        if (add_space_prefix && piece.data() == text.data()) s = "\xE2\x96\x81";
        for (char c : piece) {
          if (c == ' ') s += "\xE2\x96\x81";
          else s += c;
        }
        for (size_t i = 0; i < s.size();) {
          size_t n = Utf8Len(s, i);
          symbols.emplace_back(s.substr(i, n));
          i += n;
        }
      }
      BpeRanks(std::move(symbols), out);
    }
  }

  std::string DecodeToken(int32_t id) const {
    const std::string& t = tokens[id];
    if (types[id] == kControl || types[id] == kUserDefined) return t;
    if (types[id] == kByte || (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>')) {
      return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
    }
    if (algo == Algo::kBpeByteLevel) {
      std::string out;
      for (size_t i = 0; i < t.size();) {
        size_t n = Utf8Len(t, i);
        uint32_t cp = DecodeCp(t, i, n);
        auto it = ByteTable().cp_to_byte.find(cp);
        if (it != ByteTable().cp_to_byte.end()) out += char(it->second);
        else out.append(t, i, n);
        i += n;
      }
      return out;
    }
    std::string out;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
        out += ' ';
        i += 3;
      } else {
        out += t[i++];
      }
    }
    return out;
  }

};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::vector<std::string>> PreTokenizerRegexes(const std::string& name) {
  static const std::map<std::string, std::vector<std::string>> kTable = {
      {"default", {kGpt2Regex}},
      {"gpt-2", {kGpt2Regex}},
      {"gpt2", {kGpt2Regex}},
      {"smollm", {R"(\p{N})", kGpt2Regex}},
      {"starcoder", {R"(\p{N})", kGpt2Regex}},
      {"refact", {R"(\p{N})", kGpt2Regex}},
      {"llama3", {kLlama3Regex}},
      {"llama-bpe", {kLlama3Regex}},
      {"llama-v3", {kLlama3Regex}},
      {"smaug-bpe", {kLlama3Regex}},
      {"qwen2", {kQwen2Regex}},
  };
  auto it = kTable.find(name);
  if (it == kTable.end()) {
    return NotFoundError("unknown pre-tokenizer '" + name +
                         "' (known: default, gpt2, smollm, starcoder, refact, llama3, llama-bpe, smaug-bpe, qwen2)");
  }
  return it->second;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& g) {
  auto impl = std::make_unique<Impl>();
  const std::string where = "GGUF file '" + g.path() + "'";
  if (!g.Find("tokenizer.ggml.model")) {
    return InvalidArgumentError(where + " has no tokenizer (metadata key 'tokenizer.ggml.model' is missing); "
                                "pass a model file that includes its tokenizer");
  }
  ASSIGN_OR_RETURN(std::string model, g.GetString("tokenizer.ggml.model"));
  const GgufValue* toks = g.Find("tokenizer.ggml.tokens");
  if (!toks || !toks->as_array() || toks->elem_type != GgufValueType::kString) {
    return InvalidArgumentError(where + ": 'tokenizer.ggml.tokens' is missing or not an array of strings");
  }
  for (const auto& t : *toks->as_array()) impl->tokens.push_back(*t.as_string());
  size_t n = impl->tokens.size();
  if (const GgufValue* tt = g.Find("tokenizer.ggml.token_type")) {
    if (!tt->as_array() || tt->as_array()->size() != n) {
      return InvalidArgumentError(where + ": 'tokenizer.ggml.token_type' must have one entry per token (" + std::to_string(n) + ")");
    }
    for (const auto& t : *tt->as_array()) impl->types.push_back(int(t.as_int()));
  }
  auto opt_id = [&](const char* key) -> Result<std::optional<int32_t>> {
    if (!g.Find(key)) return std::optional<int32_t>();
    ASSIGN_OR_RETURN(int64_t v, g.GetInt(key));
    return std::optional<int32_t>(int32_t(v));
  };
  ASSIGN_OR_RETURN(impl->bos, opt_id("tokenizer.ggml.bos_token_id"));
  ASSIGN_OR_RETURN(impl->eos, opt_id("tokenizer.ggml.eos_token_id"));
  ASSIGN_OR_RETURN(impl->unk, opt_id("tokenizer.ggml.unknown_token_id"));
  auto flag = [&](const char* key, bool fallback) {
    const GgufValue* v = g.Find(key);
    if (v && std::holds_alternative<bool>(v->v)) return std::get<bool>(v->v);
    return fallback;
  };
  if (model == "gpt2") {
    impl->algo = Algo::kBpeByteLevel;
    impl->add_bos = flag("tokenizer.ggml.add_bos_token", false);
    const GgufValue* merges = g.Find("tokenizer.ggml.merges");
    if (!merges || !merges->as_array() || (merges->elem_type != GgufValueType::kString && !merges->as_array()->empty())) {
      return InvalidArgumentError(where + ": 'tokenizer.ggml.merges' is missing or not an array of strings");
    }
    int rank = 0;
    for (const auto& m : *merges->as_array()) impl->merge_rank.emplace(*m.as_string(), rank++);
    std::string pre = "default";
    if (g.Find("tokenizer.ggml.pre")) {
      ASSIGN_OR_RETURN(pre, g.GetString("tokenizer.ggml.pre"));
    }
    auto regexes = PreTokenizerRegexes(pre);
    if (!regexes.ok()) return InvalidArgumentError(where + ": tokenizer.ggml.pre: " + regexes.status().message());
    RETURN_IF_ERROR(impl->SetRegexes(*regexes));
  } else if (model == "llama") {
    impl->algo = Algo::kSpm;
    impl->add_bos = flag("tokenizer.ggml.add_bos_token", true);
    impl->add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
    impl->byte_fallback = true;
    const GgufValue* sc = g.Find("tokenizer.ggml.scores");
    if (!sc || !sc->as_array() || sc->as_array()->size() != n) {
      return InvalidArgumentError(where + ": 'tokenizer.ggml.scores' must have one score per token for a SentencePiece model");
    }
    for (const auto& s : *sc->as_array()) impl->scores.push_back(float(s.as_double()));
  } else {
    return InvalidArgumentError(where + ": tokenizer model '" + model + "' is not supported (supported: gpt2, llama)");
  }
  RETURN_IF_ERROR(impl->Finish());
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromHfJson(const std::string& path) {
  // Fields of an unexpected JSON type make nlohmann throw: an outside file
  // is bad input, never an exception.
  auto parse = [&]() -> Result<std::unique_ptr<Tokenizer>> {
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    auto bad = [&](const std::string& what) { return InvalidArgumentError("tokenizer file '" + path + "': " + what); };
    if (j.is_discarded() || !j.is_object()) return bad("not valid JSON");
    if (!j.contains("model") || !j["model"].is_object()) return bad("no \"model\" object");
    const auto& m = j["model"];
    if (m.value("type", std::string("BPE")) != "BPE") return bad("model type '" + m.value("type", std::string()) + "' is not supported (BPE only)");
    if (!m.contains("vocab") || !m["vocab"].is_object()) return bad("model.vocab is missing");
    auto impl = std::make_unique<Impl>();
    int64_t max_id = -1;
    for (auto& [tok, id] : m["vocab"].items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) return bad("model.vocab['" + tok + "'] is not a valid id");
      max_id = std::max(max_id, id.get<int64_t>());
    }
    std::vector<std::pair<std::string, int64_t>> added;
    std::vector<bool> added_special;
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const auto& a : j["added_tokens"]) {
        if (!a.contains("id") || !a.contains("content")) return bad("added_tokens entry lacks id or content");
        if (!a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > (1 << 24)) {
          return bad("added_tokens entry " + a["content"].dump() + " has no valid id");
        }
        added.emplace_back(a["content"].get<std::string>(), a["id"].get<int64_t>());
        added_special.push_back(a.value("special", false));
        max_id = std::max(max_id, a["id"].get<int64_t>());
      }
    }
    impl->tokens.resize(size_t(max_id + 1));
    impl->types.assign(size_t(max_id + 1), kNormal);
    for (auto& [tok, id] : m["vocab"].items()) impl->tokens[size_t(id.get<int64_t>())] = tok;
    for (size_t i = 0; i < added.size(); ++i) {
      impl->tokens[size_t(added[i].second)] = added[i].first;
      impl->types[size_t(added[i].second)] = added_special[i] ? kControl : kUserDefined;
    }
    int rank = 0;
    if (m.contains("merges") && m["merges"].is_array()) {
      for (const auto& mg : m["merges"]) {
        if (mg.is_string()) impl->merge_rank.emplace(mg.get<std::string>(), rank++);
        else if (mg.is_array() && mg.size() == 2) impl->merge_rank.emplace(mg[0].get<std::string>() + " " + mg[1].get<std::string>(), rank++);
        else return bad("model.merges entry " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
    }
    impl->byte_fallback = m.value("byte_fallback", false);
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      auto it = m["vocab"].find(m["unk_token"].get<std::string>());
      if (it != m["vocab"].end()) impl->unk = int32_t(it->get<int64_t>());
    }
    // Pre-tokenizer: ByteLevel (GPT-2 regex), Digits, Split(regex), Metaspace, or a Sequence of them.
    bool byte_level = false;
    std::vector<std::string> regexes;
    std::function<Status(const nlohmann::json&)> walk = [&](const nlohmann::json& p) -> Status {
      if (p.is_null()) return Status::Ok();
      std::string type = p.value("type", std::string());
      if (type == "Sequence") {
        // (operator[] on a const json with a missing key reads out of bounds)
        if (!p.contains("pretokenizers") || !p.at("pretokenizers").is_array()) return bad("Sequence pre-tokenizer without a pretokenizers array");
        for (const auto& q : p.at("pretokenizers")) RETURN_IF_ERROR(walk(q));
      } else if (type == "ByteLevel") {
        byte_level = true;
        if (p.value("use_regex", true)) regexes.push_back(kGpt2Regex);
      } else if (type == "Digits") {
        regexes.push_back(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
      } else if (type == "Split") {
        if (!p.contains("pattern") || !p["pattern"].contains("Regex")) return bad("Split pre-tokenizer without a Regex pattern is not supported");
        regexes.push_back(p.at("pattern").at("Regex").get<std::string>());
      } else if (type == "Metaspace") {
        impl->add_space_prefix = p.value("prepend_scheme", std::string("always")) != "never";
      } else {
        return bad("pre-tokenizer type '" + type + "' is not supported");
      }
      return Status::Ok();
    };
    if (j.contains("pre_tokenizer")) RETURN_IF_ERROR(walk(j["pre_tokenizer"]));
    if (j.contains("decoder") && j["decoder"].is_object() && j["decoder"].value("type", std::string()) == "ByteLevel") byte_level = true;
    impl->algo = byte_level ? Algo::kBpeByteLevel : Algo::kBpeChars;
    if (!byte_level && j.contains("normalizer") && j["normalizer"].is_object()) {
      // Llama-2-era files: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")].
      std::string dump = j["normalizer"].dump();
      if (dump.find("Prepend") != std::string::npos) impl->add_space_prefix = true;
    }
    RETURN_IF_ERROR(impl->SetRegexes(regexes));
    for (size_t i = 0; i < added.size(); ++i) {
      const std::string& c = added[i].first;
      if (c == "<s>" || c == "<|begin_of_text|>") impl->bos = int32_t(added[i].second);
      if (c == "</s>" || c == "<|endoftext|>" || c == "<|end_of_text|>") impl->eos = int32_t(added[i].second);
    }
    RETURN_IF_ERROR(impl->Finish());
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  };
  try {
    return parse();
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError("tokenizer file '" + path + "': a field has the wrong type or value (" + e.what() + ")");
  }
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool parse_special) const {
  if (text.size() > kMaxTextBytes) {
    return InvalidArgumentError("text of " + std::to_string(text.size()) + " bytes is over the tokenizer limit of " +
                                std::to_string(kMaxTextBytes));
  }
  std::vector<int32_t> out;
  size_t start = 0;
  if (parse_special && !impl_->specials_by_len.empty()) {
    for (size_t i = 0; i < text.size();) {
      int32_t hit = -1;
      for (int32_t id : impl_->specials_by_len) {
        const std::string& s = impl_->tokens[id];
        if (text.compare(i, s.size(), s) == 0) {
          hit = id;
          break;
        }
      }
      if (hit < 0) {
        ++i;
        continue;
      }
      impl_->EncodePlain(text.substr(start, i - start), &out);
      out.push_back(hit);
      i += impl_->tokens[hit].size();
      start = i;
    }
  }
  impl_->EncodePlain(text.substr(start), &out);
  return out;
}

Result<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return InvalidArgumentError("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                  std::to_string(vocab_size()) + ")");
    }
    out += impl_->DecodeToken(id);
  }
  return out;
}

const std::string& Tokenizer::Piece(int32_t id) const { return impl_->tokens.at(size_t(id)); }
std::string Tokenizer::TokenBytes(int32_t id) const { return impl_->DecodeToken(id); }

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(std::string(token));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->types[id] == kControl;
}
int32_t Tokenizer::vocab_size() const { return int32_t(impl_->tokens.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }

}  // namespace attune::runtime
