#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace moelab::tests {

// GPT-2's byte -> character table of Hugging Face's byte-level tokenizer.json, built here
// independently of plugins/tokenizers/bpe_family/byte_level.cpp: UTF-8 character -> byte.
inline std::map<std::string, unsigned char> hf_byte_decoder() {
    std::vector<int> bytes, chars;
    for (int b = '!'; b <= '~'; ++b) bytes.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
    chars = bytes;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) {
            bytes.push_back(b);
            chars.push_back(256 + extra++);
        }
    }
    std::map<std::string, unsigned char> decoder;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        const int c = chars[i];
        std::string utf8;
        if (c < 0x80) {
            utf8 = std::string(1, static_cast<char>(c));
        } else {
            utf8 += static_cast<char>(0xC0 | (c >> 6));
            utf8 += static_cast<char>(0x80 | (c & 0x3F));
        }
        decoder[utf8] = static_cast<unsigned char>(bytes[i]);
    }
    return decoder;
}

}  // namespace moelab::tests
