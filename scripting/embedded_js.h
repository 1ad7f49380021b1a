// kuai's own JavaScript (bootstrap, the http server side, the `kuai` module),
// compiled into the binary by embed_js.py so the binary needs no files beside it.
#pragma once

#include <cstddef>
#include <cstring>

namespace kuai::scripting {

struct EmbeddedFile {
  const char* name;  // e.g. "bootstrap.js", "kuai/router.js"
  const char* data;
  size_t size;
};

extern const EmbeddedFile kEmbeddedJs[];
extern const size_t kEmbeddedJsCount;

inline const EmbeddedFile* findEmbeddedJs(const char* name) {
  for (size_t i = 0; i < kEmbeddedJsCount; ++i) {
    if (std::strcmp(kEmbeddedJs[i].name, name) == 0) return &kEmbeddedJs[i];
  }
  return nullptr;
}

}  // namespace kuai::scripting
