#pragma once

// Marks the one symbol a plugin library exports. Everything else stays hidden: plugins are built
// with -fvisibility=hidden and a linker version script (see moelab_add_plugin()).
#if defined(_WIN32)
#define MOELAB_PLUGIN_EXPORT __declspec(dllexport)
#else
#define MOELAB_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif
