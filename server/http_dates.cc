#include "server/http_dates.h"

#include <cstdio>
#include <ctime>

#include "parser/http_common.h"

namespace kuai::server {

namespace {

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
int64_t daysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t mp = (m + 9) % 12;
  int64_t doy = (153 * mp + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes).
void appendHttpDate(std::string& out, time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                        tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                        tm.tm_sec);
  out.append(buf, n);
}

namespace {


bool parseDigits(std::string_view s, int& v) {
  if (s.empty()) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

int monthIndex(std::string_view s) {
  for (int i = 0; i < 12; ++i) {
    if (s == kMonths[i]) return i + 1;
  }
  return 0;
}

// hh:mm:ss
bool parseClock(std::string_view s, int& h, int& m, int& sec) {
  return s.size() == 8 && s[2] == ':' && s[5] == ':' && parseDigits(s.substr(0, 2), h) &&
         parseDigits(s.substr(3, 2), m) && parseDigits(s.substr(6, 2), sec) && h < 24 && m < 60 &&
         sec < 61;
}

}  // namespace

// Accepts the three HTTP-date forms: IMF-fixdate, RFC 850 and asctime.
// Allocation-free: conditional requests are a hot path for browsers.
bool parseHttpDate(std::string_view s, time_t& out) {
  s = parser::trimSpaces(s);
  int day = 0, month = 0, year = 0, h = 0, m = 0, sec = 0;
  size_t comma = s.find(',');
  if (comma == 3 && s.size() == 29) {  // Sun, 06 Nov 1994 08:49:37 GMT
    if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s.substr(25) != " GMT" ||
        !parseDigits(s.substr(5, 2), day) || !parseDigits(s.substr(12, 4), year) ||
        !parseClock(s.substr(17, 8), h, m, sec)) {
      return false;
    }
    month = monthIndex(s.substr(8, 3));
  } else if (comma != std::string_view::npos) {  // Sunday, 06-Nov-94 08:49:37 GMT
    std::string_view r = s.substr(comma + 1);
    if (r.size() != 23 || r[0] != ' ' || r[3] != '-' || r[7] != '-' || r[10] != ' ' ||
        r.substr(19) != " GMT" || !parseDigits(r.substr(1, 2), day) ||
        !parseDigits(r.substr(8, 2), year) || !parseClock(r.substr(11, 8), h, m, sec)) {
      return false;
    }
    year += year < 70 ? 2000 : 1900;
    month = monthIndex(r.substr(4, 3));
  } else if (s.size() == 24) {  // Sun Nov  6 08:49:37 1994
    if (s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' ||
        !parseDigits(parser::trimSpaces(s.substr(8, 2)), day) || !parseClock(s.substr(11, 8), h, m, sec) ||
        !parseDigits(s.substr(20, 4), year)) {
      return false;
    }
    month = monthIndex(s.substr(4, 3));
  } else {
    return false;
  }
  if (month == 0 || day < 1 || day > 31) return false;
  out = static_cast<time_t>(daysFromCivil(year, month, day) * 86400 + h * 3600 + m * 60 + sec);
  return true;
}

}  // namespace kuai::server
