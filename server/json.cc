#include "server/json.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

namespace kuai::server::json {

const Value* Value::find(std::string_view key) const {
  if (type != Type::kObject) return nullptr;
  for (const auto& m : members) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 256;

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  bool document(Value& out, std::string& err) {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
    skipSpace();
    if (pos_ >= s_.size()) return fail("empty document (expected a JSON value)", err);
    if (!value(out, 0, err)) return false;
    skipSpace();
    if (pos_ < s_.size()) return fail("unexpected " + here() + " after the end of the document", err);
    return true;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;

  // 1-based line and column (in characters) of byte offset `at`.
  std::string position(size_t at) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(s_[i]);
      if (c == '\n') {
        ++line;
        col = 1;
      } else if ((c & 0xC0) != 0x80) {  // not a UTF-8 continuation byte
        ++col;
      }
    }
    return std::to_string(line) + ":" + std::to_string(col);
  }

  bool fail(const std::string& what, std::string& err) { return failAt(pos_, what, err); }
  bool failAt(size_t at, const std::string& what, std::string& err) {
    err = position(at) + ": " + what;
    return false;
  }

  // The character at pos_, for messages.
  std::string here() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c < 0x20 || c == 0x7F) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "character 0x%02X", c);
      return buf;
    }
    if (c >= 0x80) return "non-ASCII character";
    return std::string("'") + char(c) + "'";
  }

  void skipSpace() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool literal(std::string_view word, std::string& err) {
    if (s_.substr(pos_, word.size()) != word) return badValue(err);
    pos_ += word.size();
    return true;
  }

  // Something at pos_ that starts no JSON value: names the whole bare word
  // (`True`, `undefined`, `NaN`, an unquoted key...) or the character.
  bool badValue(std::string& err) {
    size_t end = pos_;
    while (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_' || s_[end] == '$')) {
      ++end;
    }
    if (end == pos_) return fail("unexpected " + here() + " (expected a JSON value)", err);
    return fail("unexpected '" + std::string(s_.substr(pos_, end - pos_)) +
                    "' (expected a JSON value: an object, array, string, number, true, false or null)",
                err);
  }

  bool value(Value& out, int depth, std::string& err) {
    if (depth > kMaxDepth) return fail("nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)", err);
    if (pos_ >= s_.size()) return fail("unexpected end of input (expected a JSON value)", err);
    char c = s_[pos_];
    switch (c) {
      case '{':
        return object(out, depth, err);
      case '[':
        return array(out, depth, err);
      case '"':
        out.type = Value::Type::kString;
        return string(out.string, err);
      case 't':
        out.type = Value::Type::kBool;
        out.boolean = true;
        return literal("true", err);
      case 'f':
        out.type = Value::Type::kBool;
        out.boolean = false;
        return literal("false", err);
      case 'n':
        out.type = Value::Type::kNull;
        return literal("null", err);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return number(out, err);
        if (c == '\'') return fail("strings must use double quotes", err);
        return badValue(err);
    }
  }

  bool object(Value& out, int depth, std::string& err) {
    out.type = Value::Type::kObject;
    ++pos_;  // '{'
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    std::set<std::string, std::less<>> seen;
    for (;;) {
      skipSpace();
      if (pos_ >= s_.size()) return fail("unexpected end of input (expected a member name in double quotes)", err);
      if (s_[pos_] != '"') {
        if (s_[pos_] == '}') return fail("trailing comma before '}'", err);
        return fail("expected a member name in double quotes, got " + here(), err);
      }
      size_t keyAt = pos_;
      std::string key;
      if (!string(key, err)) return false;
      if (!seen.insert(key).second) return failAt(keyAt, "duplicate key " + quote(key), err);
      skipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected ':' after the member name, got " + here(), err);
      ++pos_;
      skipSpace();
      out.members.push_back(Member{std::move(key), Value{}});
      if (!value(out.members.back().value, depth + 1, err)) return false;
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}' after an object member, got " + here(), err);
    }
  }

  bool array(Value& out, int depth, std::string& err) {
    out.type = Value::Type::kArray;
    ++pos_;  // '['
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ']') return fail("trailing comma before ']'", err);
      out.array.emplace_back();
      if (!value(out.array.back(), depth + 1, err)) return false;
      skipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']' after an array element, got " + here(), err);
    }
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // Four hex digits at pos_ (after "\u").
  bool hex4(uint32_t& cp, std::string& err) {
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      if (pos_ >= s_.size()) return fail("unexpected end of input in a \\u escape", err);
      char c = s_[pos_];
      uint32_t d;
      if (c >= '0' && c <= '9') d = uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') d = uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = uint32_t(c - 'A' + 10);
      else return fail("expected four hex digits after \\u, got " + here(), err);
      cp = cp * 16 + d;
      ++pos_;
    }
    return true;
  }

  // One UTF-8 encoded character starting at pos_ (a lead byte >= 0x80); checks
  // for overlong forms, surrogates and code points past U+10FFFF.
  bool utf8(std::string& out, std::string& err) {
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return fail("invalid UTF-8 in a string", err);
    if (pos_ + len > s_.size()) return fail("invalid UTF-8 in a string", err);
    for (size_t i = 1; i < len; ++i) {
      unsigned char cc = static_cast<unsigned char>(s_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) return fail("invalid UTF-8 in a string", err);
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return fail("invalid UTF-8 in a string", err);
    }
    out.append(s_.substr(pos_, len));
    pos_ += len;
    return true;
  }

  bool string(std::string& out, std::string& err) {
    size_t start = pos_;
    ++pos_;  // '"'
    for (;;) {
      if (pos_ >= s_.size()) return failAt(start, "unterminated string", err);
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) {
        if (c == '\n') return fail("unterminated string (a newline must be written \\n)", err);
        return fail("control " + here() + " in a string (escape it)", err);
      }
      if (c >= 0x80) {
        if (!utf8(out, err)) return false;
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++pos_;
        continue;
      }
      size_t escAt = pos_;
      ++pos_;
      if (pos_ >= s_.size()) return failAt(start, "unterminated string", err);
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp, err)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return failAt(escAt, "lone low surrogate in a \\u escape", err);
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") {
              return failAt(escAt, "high surrogate not followed by a \\u low surrogate", err);
            }
            pos_ += 2;
            uint32_t lo;
            if (!hex4(lo, err)) return false;
            if (lo < 0xDC00 || lo > 0xDFFF) {
              return failAt(escAt, "high surrogate not followed by a \\u low surrogate", err);
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          pos_ = escAt;
          return fail("invalid escape \\" + std::string(1, e) + " in a string", err);
      }
    }
  }

  bool number(Value& out, std::string& err) {
    size_t start = pos_;
    auto digit = [&] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (s_[pos_] == '-') ++pos_;
    if (!digit()) return fail("expected a digit, got " + here(), err);
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) return failAt(start, "numbers may not have leading zeros", err);
    } else {
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit()) return fail("expected a digit after the decimal point, got " + here(), err);
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) return fail("expected a digit in the exponent, got " + here(), err);
      while (digit()) ++pos_;
    }
    std::string lexeme(s_.substr(start, pos_ - start));
    double d = std::strtod(lexeme.c_str(), nullptr);
    if (!std::isfinite(d)) return failAt(start, "number out of range", err);
    out.type = Value::Type::kNumber;
    out.number = d;
    return true;
  }
};

void serializeTo(const Value& v, std::string& out) {
  switch (v.type) {
    case Value::Type::kNull: out += "null"; break;
    case Value::Type::kBool: out += v.boolean ? "true" : "false"; break;
    case Value::Type::kNumber: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", v.number);
      out += buf;
      break;
    }
    case Value::Type::kString: out += quote(v.string); break;
    case Value::Type::kArray:
      out += '[';
      for (size_t i = 0; i < v.array.size(); ++i) {
        if (i) out += ',';
        serializeTo(v.array[i], out);
      }
      out += ']';
      break;
    case Value::Type::kObject:
      out += '{';
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        out += quote(v.members[i].key);
        out += ':';
        serializeTo(v.members[i].value, out);
      }
      out += '}';
      break;
  }
}

}  // namespace

bool parse(std::string_view text, Value& out, std::string& err) {
  out = Value{};
  Parser p(text);
  return p.document(out, err);
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string serialize(const Value& v) {
  std::string out;
  serializeTo(v, out);
  return out;
}

}  // namespace kuai::server::json
