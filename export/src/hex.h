// Hex encoding. Internal to export/.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace attune::export_::internal {

std::string ToHex(std::string_view bytes);
// nullopt for odd length or a non-hex character.
std::optional<std::string> FromHex(std::string_view hex);

}  // namespace attune::export_::internal
