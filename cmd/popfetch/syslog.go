package main

import (
	"bytes"
	"fmt"
	"log/syslog"
)

// syslogWriter sends the lines of a logger to syslog (--syslog), facility
// mail, each at the priority the "<N>" prefix the human handler writes in
// journal mode gives it; a line without one is sent at info.
type syslogWriter struct{ w *syslog.Writer }

// newSyslogWriter connects to the local syslog daemon.
func newSyslogWriter() (*syslogWriter, error) {
	w, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, "popfetch")
	if err != nil {
		// log/syslog tries /dev/log, /var/run/syslog and /var/run/log,
		// and says only "Unix syslog delivery error" when none answers.
		return nil, usageError{fmt.Sprintf("--syslog: %v: no syslog daemon listens on /dev/log; start one (rsyslog, syslog-ng, systemd-journald), or log to a file with -L FILE", err)}
	}
	return &syslogWriter{w: w}, nil
}

// Write sends one line (a handler writes a whole line a call).
func (s *syslogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	prio := byte('6')
	if len(line) >= 3 && line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>' {
		prio, line = line[1], line[3:]
	}
	var err error
	switch prio {
	case '0', '1', '2', '3':
		err = s.w.Err(line)
	case '4':
		err = s.w.Warning(line)
	case '5', '6':
		err = s.w.Info(line)
	default:
		err = s.w.Debug(line)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the connection to syslog.
func (s *syslogWriter) Close() error { return s.w.Close() }
