#pragma once

// A lexical check run before TOML text reaches toml++. Debian 12's toml++ 3.3.0 ends the process
// (an assertion, or undefined behaviour under NDEBUG) on three kinds of invalid input instead of
// raising a parse error; found by the recipe and comparison-file fuzzers:
//  - a table header whose key starts with something else than a key character or a quote
//    ("[!]", "[[[a]]]"; marzer/tomlplusplus#301),
//  - a non-ASCII character outside strings and comments where the parser looks for whitespace
//    (U+00E9 after a value; marzer/tomlplusplus#190, #295),
//  - a ',' followed by '}' or another ',' ("x = [1,}"),
//  - a date followed by 'T' or 't' and no hour ("x = 1979-05-27T:32"),
//  - a date, a space and a lone digit ("x = 1979-05-27 1 "),
//  - in a multi-line basic string, a non-ASCII character after a backslash, or one of the code
//    points its whitespace table has no answer for (U+00A1..U+0499, U+2C5E..U+3057 less U+3000,
//    U+FB26..U+FEFE) first after a line-ending backslash.
// All but the last are invalid TOML 1.0 (bare keys and everything outside strings and comments
// are ASCII; a ',' separates values and is never followed by '}' or ','; a date-time's 'T' is
// followed by the hour; an escape is ASCII).
// The last is valid TOML this parser cannot read: it is refused with the escape that reads the
// same ("\u00E9"), the only valid file refused here. Remove this check once the toml++ in use has
// the fixes.

#include <optional>
#include <string>
#include <string_view>

namespace moelab::core {

struct TomlHazard {
    int line = 0;    // 1-based
    int column = 0;  // 1-based, in bytes
    std::string message;
};

std::optional<TomlHazard> find_toml_hazard(std::string_view text);

}  // namespace moelab::core
