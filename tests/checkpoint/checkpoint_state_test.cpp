// state.json that is valid JSON but hostile: nested 100,000 levels deep (about 200 KB). The parser
// and the JSON library's destructor must neither recurse into a stack overflow nor accept it; the
// error names the file and the field.

#include <gtest/gtest.h>

#include <string>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/checkpoint_state.h"

namespace moelab::core {
namespace {

TEST(CheckpointState, DeeplyNestedJsonIsRefusedNamingTheFieldWithoutRecursing) {
    constexpr int kDepth = 100000;
    const std::string nested = std::string(kDepth, '[') + std::string(kDepth, ']');
    for (const std::string& text :
         {nested, std::string(R"({"format": "moelab-checkpoint-1", "step": )") + nested + "}"}) {
        try {
            parse_checkpoint_state(text, "run/checkpoints/step-5/state.json");
            FAIL() << "accepted a nested array as state.json";
        } catch (const CheckpointError& error) {
            const std::string message = error.what();
            EXPECT_NE(message.find("run/checkpoints/step-5/state.json"), std::string::npos)
                << message;
            EXPECT_LT(message.size(), 400u) << "the message echoes the input";
        }
    }
}

}  // namespace
}  // namespace moelab::core
