#!/usr/bin/env python3
"""Writes a C++ source holding JavaScript files as byte arrays.

usage: embed_js.py OUT.cc NAME=PATH...
"""
import sys


def main():
    out = sys.argv[1]
    entries = [a.split("=", 1) for a in sys.argv[2:]]
    lines = ['#include "scripting/embedded_js.h"', "", "namespace kuai::scripting {", "namespace {"]
    for i, (_, path) in enumerate(entries):
        data = open(path, "rb").read()
        body = ",".join(str(b) for b in data) or "0"
        lines.append(f"const char kFile{i}[] = {{{body}}};")
    lines += ["}  // namespace", "", "const EmbeddedFile kEmbeddedJs[] = {"]
    for i, (name, path) in enumerate(entries):
        size = len(open(path, "rb").read())
        lines.append(f'    {{"{name}", kFile{i}, {size}}},')
    lines += ["};", f"const size_t kEmbeddedJsCount = {len(entries)};", "", "}  // namespace kuai::scripting", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
