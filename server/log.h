// kuai's own messages for people ("kuai: ..." lines on stderr). Under
// systemd, when stderr is the journal's stream ($JOURNAL_STREAM names its
// device and inode), each line starts with its syslog priority ("<3>" for an
// error, "<4>" a warning, "<5>" a notice, "<6>" information), which journald
// strips and records, so `journalctl -u kuai -p warning` shows what went
// wrong; the journal stamps the time, so no line carries one. Elsewhere the
// lines are as written. Each message goes out in one write(2), whole, even
// when reactor threads log at the same time.
#pragma once

namespace kuai::server {

enum class LogLevel { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6 };

// printf-style; `format` is the whole line(s), "kuai: " and "\n" included.
void logLine(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

// True when stderr is connected to the journal (looked up once).
bool stderrIsJournal();

}  // namespace kuai::server
