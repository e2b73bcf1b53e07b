// Payload: an Adapter as one self-checking file (the protobuf message
// attune.v1.AdapterPayload: manifest, tensors, a SHA-256 per tensor).
//
// The SHA-256 of the encoded bytes is the adapter's version id (content
// addressing): the same bytes always have the same id, and a payload whose
// bytes do not hash to its id is corrupt.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"

namespace attune::adapters {

// The newest payload layout this build writes and reads. 2: the adapter has
// a scope (Adapter::scope), which a reader of version 1 would ignore and so
// serve the adapter on every request; an adapter without one is still
// written as 1, byte for byte as before.
inline constexpr uint32_t kPayloadFormatVersion = 2;
inline constexpr uint32_t kUnscopedPayloadFormatVersion = 1;
// Readers refuse larger payloads (OutOfRange) before parsing them.
inline constexpr size_t kMaxPayloadBytes = size_t{1} << 30;

// Serializes `adapter` (deterministically: equal adapters give equal bytes).
// InvalidArgument when adapter.Validate() fails.
Result<std::string> EncodePayload(const Adapter& adapter);

// Parses and validates payload bytes. `name` (a path, usually) is put in
// every message. DataLoss: not a payload, truncated, a tensor checksum or
// shape mismatch, an invalid adapter. Unsupported: format_version newer than
// kPayloadFormatVersion. OutOfRange: larger than kMaxPayloadBytes.
Result<Adapter> DecodePayload(std::string_view bytes, std::string_view name);

// The version id of payload bytes: lower-case SHA-256 hex (64 chars).
std::string PayloadVersionId(std::string_view bytes);

// The first 12 hex chars of a version id, for display.
std::string ShortVersion(std::string_view id);

// Reads and decodes a payload file (DecodePayload's errors, plus NotFound and
// IoError). When `expected_id` is non-empty the file's SHA-256 must equal it
// (DataLoss otherwise). When `id` is not null it receives the file's version
// id (for a file given by path, as in `attune generate --adapter PATH`).
Result<Adapter> ReadPayloadFile(const std::string& path, std::string_view expected_id = {}, std::string* id = nullptr);

// Encodes `adapter` and writes it with WriteFileAtomic. Returns the version id.
Result<std::string> WritePayloadFile(const std::string& path, const Adapter& adapter);

}  // namespace attune::adapters
