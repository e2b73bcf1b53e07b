// Writes the Attune-side fixture adapter (fixture_adapter.h) as PEFT and
// GGUF-LoRA for the tiny test model, for tools/make_export_fixtures.py:
//   export_fixture_tool OUT_DIR   ->  OUT_DIR/attune_peft/, OUT_DIR/attune_lora.gguf
#include <iostream>

#include "attune/export/gguf_lora.h"
#include "attune/export/peft.h"
#include "tests/export/fixture_adapter.h"
#include "tests/export/test_util.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: export_fixture_tool OUT_DIR\n";
    return 2;
  }
  using namespace attune::export_;
  BaseModel base = testing::TinyBase();
  base.name_or_path = "tests/fixtures/models/tiny_llama";
  auto a = testing::FixtureAdapter(base);
  const std::string out = argv[1];
  attune::Status s = WritePeft(a, base, out + "/attune_peft");
  if (s.ok()) s = WriteGgufLora(a, base, out + "/attune_lora.gguf");
  if (!s.ok()) {
    std::cerr << s.ToString() << "\n";
    return 1;
  }
  return 0;
}
