#include "encoding.h"

#include <cstring>

namespace attune::replay::internal {
namespace {

constexpr uint8_t kRecordVersion = 1;
constexpr uint8_t kStateVersion = 1;
constexpr uint8_t kVersionRecordVersion = 1;

// A cursor over a value being decoded; every read checks the bounds.
class Reader {
 public:
  explicit Reader(std::string_view v) : v_(v) {}
  bool U64(uint64_t* out) {
    if (v_.size() < 8) return false;
    *out = DecodeFixed64BE(v_.data());
    v_.remove_prefix(8);
    return true;
  }
  bool U32(uint32_t* out) {
    if (v_.size() < 4) return false;
    *out = DecodeFixed32BE(v_.data());
    v_.remove_prefix(4);
    return true;
  }
  bool U8(uint8_t* out) {
    if (v_.empty()) return false;
    *out = static_cast<uint8_t>(v_[0]);
    v_.remove_prefix(1);
    return true;
  }
  bool Bytes(size_t n, std::string* out) {
    if (v_.size() < n) return false;
    out->assign(v_.data(), n);
    v_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return v_; }

 private:
  std::string_view v_;
};

}  // namespace

void PutFixed32BE(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutFixed64BE(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t DecodeFixed32BE(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t DecodeFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string SeqKey(uint64_t seq) {
  std::string k;
  PutFixed64BE(&k, seq);
  return k;
}

std::string TimeKey(const feedback::Timestamp& t, uint64_t seq) {
  std::string k;
  PutFixed64BE(&k, static_cast<uint64_t>(t.seconds) ^ (1ull << 63));
  PutFixed32BE(&k, static_cast<uint32_t>(t.nanos));
  PutFixed64BE(&k, seq);
  return k;
}

feedback::Timestamp TimeFromKey(std::string_view key) {
  return {static_cast<int64_t>(DecodeFixed64BE(key.data()) ^ (1ull << 63)),
          static_cast<int32_t>(DecodeFixed32BE(key.data() + 8))};
}

std::string UserPrefix(std::string_view user_id) {
  std::string k(user_id);
  k.push_back('\0');
  return k;
}

std::string UserKey(std::string_view user_id, uint64_t seq) {
  std::string k = UserPrefix(user_id);
  PutFixed64BE(&k, seq);
  return k;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c != 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\xff');  // unreachable for our prefixes
}

std::string SlotKey(uint32_t slot) {
  std::string k(kSlotPrefix);
  PutFixed32BE(&k, slot);
  return k;
}

std::string MemberKey(uint64_t seq) {
  std::string k = "m";
  PutFixed64BE(&k, seq);
  return k;
}

std::string LineageEventPrefix(std::string_view event_id) {
  std::string k = "e";
  k.append(event_id);
  k.push_back('\0');
  return k;
}
std::string LineageEventKey(std::string_view event_id, std::string_view version) {
  return LineageEventPrefix(event_id).append(version);
}
std::string LineageVersionKey(std::string_view version, std::string_view event_id) {
  std::string k = "v";
  k.append(version);
  k.push_back('\0');
  return k.append(event_id);
}
std::string LineageUserPrefix(std::string_view user_id) {
  std::string k = "u";
  k.append(user_id);
  k.push_back('\0');
  return k;
}
std::string LineageUserKey(std::string_view user_id, std::string_view version) {
  return LineageUserPrefix(user_id).append(version);
}
std::string VersionRecordKey(std::string_view version) { return std::string(kVersionRecordPrefix).append(version); }

std::string EncodeRecord(const Record& r) {
  std::string out;
  out.reserve(1 + 8 + 8 + 4 + 4 + r.user_id.size() + r.payload.size());
  out.push_back(static_cast<char>(kRecordVersion));
  PutFixed64BE(&out, r.seq);
  PutFixed64BE(&out, static_cast<uint64_t>(r.time.seconds));
  PutFixed32BE(&out, static_cast<uint32_t>(r.time.nanos));
  PutFixed32BE(&out, static_cast<uint32_t>(r.user_id.size()));
  out.append(r.user_id);
  out.append(r.payload);
  return out;
}

Result<Record> DecodeRecord(std::string_view value) {
  Reader in(value);
  uint8_t version;
  Record r;
  uint64_t secs;
  uint32_t nanos, user_len;
  if (!in.U8(&version)) return DataLossError("empty event record");
  if (version != kRecordVersion) {
    return DataLossError("event record version " + std::to_string(version) + " is unknown");
  }
  if (!in.U64(&r.seq) || !in.U64(&secs) || !in.U32(&nanos) || !in.U32(&user_len) || !in.Bytes(user_len, &r.user_id)) {
    return DataLossError("truncated event record (" + std::to_string(value.size()) + " bytes)");
  }
  r.time = {static_cast<int64_t>(secs), static_cast<int32_t>(nanos)};
  r.payload.assign(in.rest());
  return r;
}

std::string EncodeState(const State& s) {
  std::string out(1, static_cast<char>(kStateVersion));
  for (uint64_t v : {s.next_seq, s.cursor, s.grad_ptr, s.graduated, s.rng, s.capacity,
                     static_cast<uint64_t>(s.age_floor), s.events, s.bytes, s.recent, s.reservoir, s.appended,
                     s.duplicates, s.forgotten, s.evicted_count, s.evicted_bytes, s.evicted_age, s.versions}) {
    PutFixed64BE(&out, v);
  }
  return out;
}

Result<State> DecodeState(std::string_view value) {
  Reader in(value);
  uint8_t version;
  if (!in.U8(&version) || version != kStateVersion) {
    return DataLossError("sampler state has an unknown version");
  }
  State s;
  uint64_t age_floor;
  for (uint64_t* v : {&s.next_seq, &s.cursor, &s.grad_ptr, &s.graduated, &s.rng, &s.capacity, &age_floor, &s.events,
                      &s.bytes, &s.recent, &s.reservoir, &s.appended, &s.duplicates, &s.forgotten, &s.evicted_count,
                      &s.evicted_bytes, &s.evicted_age, &s.versions}) {
    if (!in.U64(v)) return DataLossError("truncated sampler state");
  }
  s.age_floor = static_cast<int64_t>(age_floor);
  return s;
}

std::string EncodeVersionRecord(const VersionRecord& v) {
  std::string out(1, static_cast<char>(kVersionRecordVersion));
  for (uint64_t x : {v.commits, v.events, v.missing, v.erased, v.last_cursor}) {
    PutFixed64BE(&out, x);
  }
  return out;
}

Result<VersionRecord> DecodeVersionRecord(std::string_view value) {
  Reader in(value);
  uint8_t version;
  VersionRecord v;
  if (!in.U8(&version) || version != kVersionRecordVersion) {
    return DataLossError("lineage record has an unknown version");
  }
  for (uint64_t* x : {&v.commits, &v.events, &v.missing, &v.erased, &v.last_cursor}) {
    if (!in.U64(x)) return DataLossError("truncated lineage record");
  }
  return v;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t UniformBelow(uint64_t& state, uint64_t n) {
  // Rejection (Lemire's threshold) so every value is equally likely.
  uint64_t threshold = (0 - n) % n;
  while (true) {
    uint64_t r = SplitMix64(state);
    if (r >= threshold) return r % n;
  }
}

}  // namespace attune::replay::internal
