#include "src/names.h"

#include <chrono>

#include "attune/export/base_model.h"

namespace attune::export_ {

bool GgufPermutesQk(const std::string& arch) { return arch == "llama" || arch == "mistral"; }

namespace internal {
namespace {

constexpr std::string_view kHfPaths[adapters::kNumLoraTargets] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
constexpr std::string_view kGguf[adapters::kNumLoraTargets] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                               "ffn_gate", "ffn_up", "ffn_down"};

}  // namespace

std::string_view HfModulePath(adapters::LoraTarget t) { return kHfPaths[int(t)]; }

std::string_view HfLeafName(adapters::LoraTarget t) {
  std::string_view p = kHfPaths[int(t)];
  return p.substr(p.find('.') + 1);
}

std::string_view GgufName(adapters::LoraTarget t) { return kGguf[int(t)]; }

std::vector<float> PermuteRows(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t n_head, bool inverse) {
  // Row r of the permuted matrix = row src(r) of the original, where
  // r = (h, j, i) over (n_head, half, 2) and src = (h, i, j) over (n_head, 2, half).
  const int64_t half = rows / n_head / 2;
  std::vector<float> out(m.size());
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t i = 0; i < 2; ++i) {
        int64_t permuted = (h * half + j) * 2 + i;
        int64_t original = (h * 2 + i) * half + j;
        int64_t dst = inverse ? original : permuted, src = inverse ? permuted : original;
        std::copy(m.begin() + src * cols, m.begin() + (src + 1) * cols, out.begin() + dst * cols);
      }
    }
  }
  return out;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace internal
}  // namespace attune::export_
