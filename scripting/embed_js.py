#!/usr/bin/env python3
"""Writes a C++ source holding JavaScript files as byte arrays.

usage: embed_js.py OUT.cc NAME=PATH...           the kEmbeddedJs table (embedded_js.h)
       embed_js.py --single SYMBOL OUT.cc PATH   one file as `std::string_view SYMBOL()`
"""
import sys


def table(out, entries):
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


def single(symbol, out, path):
    data = open(path, "rb").read()
    body = ",".join(str(b) for b in data) or "0"
    with open(out, "w") as f:
        f.write("\n".join([
            "#include <string_view>", "", "namespace kuai::scripting {", "namespace {",
            f"const char kData[] = {{{body}}};", "}  // namespace", "",
            f"std::string_view {symbol}() {{ return std::string_view(kData, {len(data)}); }}", "",
            "}  // namespace kuai::scripting", ""]))


def main():
    if sys.argv[1] == "--single":
        single(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        table(sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]])


if __name__ == "__main__":
    main()
