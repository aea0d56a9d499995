#pragma once

// Ties an object created by a plugin to the plugin's library: the returned pointer owns both, and
// destroys the object before releasing the library (whose code runs the object's destructor).

#include <memory>
#include <utility>

#include "core/plugin/plugin_info.h"

namespace moelab::core {

template <class T>
std::shared_ptr<T> keep_alive(std::shared_ptr<T> object, LibraryHandle library) {
    if (!object) return object;
    struct Holder {
        LibraryHandle library;      // declared first: destroyed last
        std::shared_ptr<T> object;
    };
    auto holder = std::make_shared<Holder>(Holder{std::move(library), std::move(object)});
    T* raw = holder->object.get();
    return std::shared_ptr<T>(std::move(holder), raw);
}

}  // namespace moelab::core
