// A small strict JSON (RFC 8259) parser for config files: objects, arrays,
// strings (all escapes, \u surrogate pairs, UTF-8 checked), numbers, true, false,
// null. No comments, no trailing commas, no duplicate keys. Errors name the
// line and column (1-based; columns count characters) where parsing stopped.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kuai::server::json {

struct Member;

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Type type = Type::kNull;
  bool boolean = false;   // kBool
  double number = 0;      // kNumber
  std::string string;     // kString
  std::vector<Value> array;                            // kArray
  std::vector<Member> members;  // kObject, in file order

  bool isNull() const { return type == Type::kNull; }
  bool isBool() const { return type == Type::kBool; }
  bool isNumber() const { return type == Type::kNumber; }
  bool isString() const { return type == Type::kString; }
  bool isArray() const { return type == Type::kArray; }
  bool isObject() const { return type == Type::kObject; }

  // The member named `key` of an object, or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;
};

struct Member {
  std::string key;
  Value value;
};

// Parses a whole document (surrounding whitespace and a leading UTF-8 BOM
// allowed). On failure returns false and sets err to "LINE:COLUMN: what".
bool parse(std::string_view text, Value& out, std::string& err);

// A value written back as JSON text (compact); strings escaped, numbers as %.17g.
std::string serialize(const Value& v);
// A string as a JSON string literal: "a\"b".
std::string quote(std::string_view s);

}  // namespace kuai::server::json
