#include "json_reader.h"

#include <cctype>
#include <set>
#include <vector>

namespace attune::feedback::internal {
namespace {

using nlohmann::json;

// One pass over the raw bytes: NUL bytes and the nesting depth, so that
// hostile input never reaches a recursive algorithm (dump, destruction,
// the protobuf mapping).
Status ScanBytes(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\0') {
      return InvalidArgumentError("byte " + std::to_string(i) + ": a NUL byte (not allowed in JSON text)");
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        return InvalidArgumentError("byte " + std::to_string(i) + ": nested deeper than " + std::to_string(max_depth) +
                                    " levels");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return Status::Ok();
}

// "user_id", "userId" and "UserID" all name the field user_id in the
// protobuf JSON mapping.
std::string Canonical(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c != '_') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

// The DOM builder plus key checks. nlohmann's SAX interface is static
// (sax_parse is a template), so this forwards every event by hand.
class CheckingSax {
 public:
  explicit CheckingSax(json& out) : dom_(out, /*allow_exceptions=*/false) {}

  bool null() { return Value() && dom_.null(); }
  bool boolean(bool v) { return Value() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return Value() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return Value() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return Value() && dom_.number_float(v, s); }
  bool string(json::string_t& v) { return Value() && dom_.string(v); }
  bool binary(json::binary_t& v) { return Value() && dom_.binary(v); }
  bool start_object(std::size_t n) {
    Push(true);
    return dom_.start_object(n);
  }
  bool end_object() {
    frames_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    Push(false);
    return dom_.start_array(n);
  }
  bool end_array() {
    frames_.pop_back();
    return dom_.end_array();
  }
  bool key(json::string_t& k) {
    Frame& f = frames_.back();
    f.key = k;
    // The keys of `tags` are the user's: only an exact repeat is a conflict.
    const bool user_keys = frames_.size() == 2 && frames_[0].key == "tags";
    auto [it, fresh] = f.seen.emplace(user_keys ? k : Canonical(k), k);
    if (!fresh) {
      error_ = it->second == k ? InvalidArgumentError(Path() + ": duplicate key")
                               : InvalidArgumentError(Path() + ": keys '" + Printable(it->second) + "' and '" +
                                                      Printable(k) + "' name the same field");
      return false;
    }
    return dom_.key(k);
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& last_token, const Exception& ex) {
    (void)last_token;
    error_ = InvalidArgumentError("invalid JSON at byte " + std::to_string(position) + ": " + Printable(ex.what()));
    return false;
  }

  const Status& error() const { return error_; }

 private:
  struct Frame {
    bool object = false;
    std::string key;                          // the current key (objects)
    size_t index = 0;                         // the next element (arrays)
    std::map<std::string, std::string> seen;  // canonical key -> as written
  };

  void Push(bool object) {
    Value();
    frames_.push_back(Frame{object, "", 0, {}});
  }
  // Counts array elements, for paths like context[2].
  bool Value() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
    return true;
  }
  std::string Path() const {
    std::string p;
    for (const Frame& f : frames_) {
      if (f.object) {
        p += (p.empty() ? "" : ".") + Printable(f.key);
      } else {
        p += "[" + std::to_string(f.index == 0 ? 0 : f.index - 1) + "]";
      }
    }
    return p.empty() ? "event" : p;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<Frame> frames_;
  Status error_;
};

}  // namespace

std::string Printable(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Status ReadStrictJson(std::string_view text, size_t max_bytes, int max_depth, json& out) {
  if (text.size() > max_bytes) {
    return InvalidArgumentError("event: " + std::to_string(text.size()) + " bytes of JSON exceeds the limit of " +
                                std::to_string(max_bytes));
  }
  RETURN_IF_ERROR(ScanBytes(text, max_depth));
  CheckingSax sax(out);
  bool ok = json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                            /*strict=*/true);
  if (!ok || !sax.error().ok()) {
    out = json();
    return sax.error().ok() ? InvalidArgumentError("invalid JSON") : sax.error();
  }
  return Status::Ok();
}

}  // namespace attune::feedback::internal
