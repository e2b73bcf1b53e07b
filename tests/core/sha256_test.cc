#include "attune/core/sha256.h"

#include <gtest/gtest.h>

namespace attune {
namespace {

// Test vectors from FIPS 180-4 examples / NIST CAVP.
TEST(Sha256Test, MatchesStandardVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, StreamingEqualsOneShot) {
  std::string data(1000003, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 131 % 251);
  Sha256 h;
  for (size_t i = 0; i < data.size(); i += 777) h.Update(std::string_view(data).substr(i, 777));
  EXPECT_EQ(h.FinishHex(), Sha256Hex(data));
}

}  // namespace
}  // namespace attune
