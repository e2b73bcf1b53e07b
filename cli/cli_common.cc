#include "cli/cli_common.h"

#include <cmath>
#include <cstdlib>
#include <iostream>

namespace attune::cli {

int PrintError(const Status& status) {
  std::cerr << "attune: error: " << status.message() << "\n";
  return kExitError;
}

void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

CLI::Option* AddDataDirFlag(CLI::App* cmd, GlobalOptions& g) {
  return cmd->add_option("--data-dir", g.data_dir, "Data directory (default: $ATTUNE_HOME or ~/.local/share/attune)")
      ->check(NonEmptyValue());
}

void AddCommonFlags(CLI::App* cmd, GlobalOptions& g) {
  AddDataDirFlag(cmd, g);
  cmd->add_flag("--json", g.json, "Machine-readable JSON output");
}

const CLI::Validator& NonEmptyValue() {
  static const CLI::Validator v(
      [](std::string& value) -> std::string {
        return value.empty() ? "must not be empty (leave the option out for the default)" : "";
      },
      "NOT EMPTY");
  return v;
}

const CLI::Validator& FiniteNumber() {
  static const CLI::Validator v(
      [](std::string& value) -> std::string {
        char* end = nullptr;
        const double d = std::strtod(value.c_str(), &end);
        if (value.empty() || end == value.c_str() || *end != '\0') return "'" + value + "' is not a number";
        return std::isfinite(d) ? "" : "'" + value + "' is not a finite number";
      },
      "FINITE");
  return v;
}

CLI::Validator CountValue(uint64_t max) {
  return CLI::Validator(
      [max](std::string& value) -> std::string {
        const std::string bad = "'" + value + "' is not a count from 0 to " + std::to_string(max);
        if (value.empty() || value.size() > 20) return bad;
        for (char c : value) {
          if (c < '0' || c > '9') return bad;
        }
        // 20 digits may still overflow: compare before converting.
        if (value.size() == 20 && value > "18446744073709551615") return bad;
        return std::stoull(value) > max ? bad : "";
      },
      "UINT");
}

uint64_t ParseCount(const std::string& text) { return text.empty() ? 0 : std::stoull(text); }

Status ReadCapped(std::istream& in, size_t max_bytes, const std::string& what, std::string* out) {
  out->clear();
  char buf[64 * 1024];
  while (in) {
    in.read(buf, sizeof buf);
    out->append(buf, static_cast<size_t>(in.gcount()));
    if (out->size() > max_bytes) {
      return InvalidArgumentError(what + ": more than " + std::to_string(max_bytes) +
                                  " bytes (the limit of one event; see docs/limits.md)");
    }
  }
  if (in.bad()) return IoError(what + ": read failed");
  return Status::Ok();
}

bool ReadLineCapped(std::istream& in, size_t max_bytes, std::string* line, bool* too_long) {
  line->clear();
  *too_long = false;
  std::streambuf* sb = in.rdbuf();
  for (;;) {
    int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return !line->empty();
    }
    if (c == '\n') return true;
    if (line->size() == max_bytes) {
      *too_long = true;
      return true;
    }
    line->push_back(static_cast<char>(c));
  }
}

}  // namespace attune::cli
