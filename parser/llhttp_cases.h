// Reads llhttp's markdown test cases (test/request, test/response in the
// llhttp repository, copied into the shared seed corpus): each case is a fenced
// raw message, a meta comment with its type, and the parser events llhttp
// expects. Test support for the corpus tests, header-only.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kuai::parser {

// One fenced message from llhttp's markdown tests.
struct MdCase {
  std::string file;
  std::string heading;
  std::string type;  // from the meta comment, e.g. "request-lenient-headers"
  std::string meta;
  std::string raw;   // the bytes to parse
  std::string log;   // the expected events, as written
};

// The http block's text as llhttp's harness reads it: the final newline goes,
// "\<newline>" joins lines, newlines become CRLF, then C-like escapes apply.
inline std::string decodeMessage(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  std::string joined;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '\n') {
      ++i;
      continue;
    }
    if (text[i] == '\n') {
      joined += "\r\n";
      continue;
    }
    joined += text[i];
  }
  std::string out;
  for (size_t i = 0; i < joined.size(); ++i) {
    char c = joined[i];
    if (c != '\\' || i + 1 >= joined.size()) {
      out += c;
      continue;
    }
    char e = joined[++i];
    switch (e) {
      case 'r': out += '\r'; break;
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'f': out += '\f'; break;
      case 'e': out += '\x1b'; break;
      case 'x': {
        int v = 0, digits = 0;
        while (digits < 2 && i + 1 < joined.size() && std::isxdigit((unsigned char)joined[i + 1])) {
          v = v * 16 + std::stoi(std::string(1, joined[++i]), nullptr, 16);
          ++digits;
        }
        out += char(v);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0', digits = 1;
          while (digits < 3 && i + 1 < joined.size() && joined[i + 1] >= '0' && joined[i + 1] <= '7') {
            v = v * 8 + (joined[++i] - '0');
            ++digits;
          }
          out += char(v);
        } else {
          out += e;  // \\ and \" stand for themselves
        }
    }
  }
  return out;
}

inline std::vector<MdCase> readMarkdownCases(const std::filesystem::path& file) {
  std::vector<MdCase> cases;
  std::ifstream in(file);
  std::string line, heading, meta, type, block, blockKind;
  bool inBlock = false;
  while (std::getline(in, line)) {
    if (inBlock) {
      if (line == "```") {
        inBlock = false;
        if (blockKind == "http") {
          cases.push_back(MdCase{file.filename().string(), heading, type, meta, decodeMessage(block), ""});
        } else if (blockKind == "log" && !cases.empty() && cases.back().log.empty()) {
          cases.back().log = block;
        }
      } else {
        block += line + "\n";
      }
      continue;
    }
    if (line.rfind("```", 0) == 0) {
      inBlock = true;
      blockKind = line.substr(3);
      block.clear();
    } else if (line.rfind("#", 0) == 0) {
      heading = line;
      type.clear();
      meta.clear();
    } else if (line.find("<!-- meta=") != std::string::npos) {
      meta = line;
      size_t t = line.find("\"type\"");
      if (t != std::string::npos) {
        size_t q1 = line.find('"', line.find(':', t) + 1);
        size_t q2 = line.find('"', q1 + 1);
        type = line.substr(q1 + 1, q2 - q1 - 1);
      }
    }
  }
  return cases;
}

// Every case of the .md files directly in `dir`, in file name order.
inline std::vector<MdCase> readMarkdownDir(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".md") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<MdCase> cases;
  for (const auto& f : files) {
    std::vector<MdCase> more = readMarkdownCases(f);
    cases.insert(cases.end(), more.begin(), more.end());
  }
  return cases;
}

inline size_t countOf(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace kuai::parser
