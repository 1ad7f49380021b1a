// Small conversions between V8 values and C++ strings, shared by the scripting
// layer's bindings. Every function runs on the isolate's own thread.
#pragma once

#include <v8.h>

#include <string>
#include <string_view>

namespace kuai::scripting {

// Which C++ object an internal field holds (V8 checks the tag on the way out).
constexpr v8::EmbedderDataTypeTag kExchangeTag = 1;
constexpr v8::EmbedderDataTypeTag kClientCallTag = 2;

inline v8::Local<v8::String> str(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal, int(s.size()))
      .ToLocalChecked();
}

// HTTP field values and reason phrases as Node's parser gives them: latin1.
inline v8::Local<v8::String> latin1(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromOneByte(iso, reinterpret_cast<const uint8_t*>(s.data()),
                                    v8::NewStringType::kNormal, int(s.size()))
      .ToLocalChecked();
}

inline std::string toStdString(v8::Isolate* iso, v8::Local<v8::Value> v) {
  v8::String::Utf8Value u(iso, v);
  return *u ? std::string(*u, size_t(u.length())) : std::string();
}

// A JS string as UTF-8 bytes (lone surrogates become U+FFFD, as Node writes them).
inline std::string utf8(v8::Isolate* iso, v8::Local<v8::String> s) {
  std::string out(s->Utf8LengthV2(iso), '\0');
  size_t n = s->WriteUtf8V2(iso, out.data(), out.size(), v8::String::WriteFlags::kReplaceInvalidUtf8);
  out.resize(n);
  return out;
}

// A JS string as latin1 bytes (what an HTTP head carries).
inline std::string oneByte(v8::Isolate* iso, v8::Local<v8::String> s) {
  std::string out(size_t(s->Length()), '\0');
  s->WriteOneByteV2(iso, 0, uint32_t(out.size()), reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

// [a, b] as a JS array of numbers (exact up to 2^53).
inline v8::Local<v8::Array> numberPair(v8::Isolate* iso, uint64_t a, uint64_t b) {
  v8::Local<v8::Value> pair[2] = {v8::Number::New(iso, double(a)), v8::Number::New(iso, double(b))};
  return v8::Array::New(iso, pair, 2);
}

inline void throwError(v8::Isolate* iso, const std::string& msg, const char* code = nullptr) {
  v8::Local<v8::Value> e = v8::Exception::Error(str(iso, msg));
  if (code) {
    e.As<v8::Object>()->Set(iso->GetCurrentContext(), str(iso, "code"), str(iso, code)).Check();
  }
  iso->ThrowException(e);
}

}  // namespace kuai::scripting
