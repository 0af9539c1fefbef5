package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/popfetch/popfetch/fetch/termsafe"
)

// humanHandler writes log records as one line each, the way a person at a
// terminal or reading a cron mail wants them:
//
//	popfetch: work: 3 new messages, 3 delivered (12 KiB), 3 deleted
//	popfetch: work: warning: message larger than size_limit left on the server uid=... size=...
//
// The "account" attribute becomes the prefix; the others follow as
// key=value pairs.
//
// For journald (journal set) the line starts with the record's syslog
// priority, "<3>" for an error (sd-daemon(3)), instead of "popfetch: ",
// and carries no time of its own: the journal adds both. With stamp set
// each line starts with the local time, for a daemon's log file.
type humanHandler struct {
	mu      *sync.Mutex
	w       io.Writer
	level   slog.Leveler
	attrs   []slog.Attr
	journal bool
	stamp   bool
}

func newHumanHandler(w io.Writer, level slog.Leveler) *humanHandler {
	return &humanHandler{mu: &sync.Mutex{}, w: w, level: level}
}

// syslogPriority maps a level to the syslog priority journald reads from
// a "<N>" prefix.
func syslogPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (h *humanHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *humanHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &h2
}

// WithGroup is not used by popfetch; groups are flattened.
func (h *humanHandler) WithGroup(string) slog.Handler { return h }

func (h *humanHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case h.journal:
		fmt.Fprintf(&b, "<%d>", syslogPriority(r.Level))
	case h.stamp:
		b.WriteString(r.Time.Format("2006-01-02 15:04:05 "))
		fallthrough
	default:
		b.WriteString("popfetch: ")
	}
	var rest []slog.Attr
	add := func(a slog.Attr) {
		if a.Key == "account" {
			b.WriteString(a.Value.String() + ": ")
			return
		}
		rest = append(rest, a)
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(strings.ReplaceAll(r.Message, "\n", " "))
	for _, a := range rest {
		v := a.Value.Resolve().String()
		if v == "" || strings.ContainsAny(v, " \"=\t\n") {
			// Quoted for the eye, not escaped again: safeHandler has
			// already written what needed it as \x1b and the like.
			v = `"` + strings.ReplaceAll(strings.ReplaceAll(v, `"`, `\"`), "\n", " ") + `"`
		}
		b.WriteString(" " + a.Key + "=" + v)
	}
	b.WriteString("\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// humanBytes formats a byte count for people: 512 B, 12.3 KiB, 4.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Log formats (--log-format).
const (
	logAuto  = "auto"  // human lines; for journald with priorities; for a daemon elsewhere with times
	logHuman = "human" // "popfetch: account: message key=value"
	logText  = "text"  // slog's key=value lines, with time and level
	logJSON  = "json"  // one JSON object a line, for log collectors
)

// newLogger returns the logger for format at level. daemon asks for
// times on human lines (unless journald adds its own). Every format sees
// records through safeHandler.
func newLogger(w io.Writer, format string, level slog.Level, daemon bool) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case logAuto, "":
		hh := newHumanHandler(w, level)
		if _, ok := w.(*syslogWriter); ok || underJournal(w) {
			hh.journal = true
		} else {
			hh.stamp = daemon
		}
		h = hh
	case logHuman:
		h = newHumanHandler(w, level)
	case logText:
		h = slog.NewTextHandler(w, opts)
	case logJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, usageError{fmt.Sprintf("--log-format %q: want auto, human, text or json", format)}
	}
	return slog.New(safeHandler{h}), nil
}

// safeHandler passes every record's message and attribute values through
// termsafe before the handler it wraps formats them: log lines carry
// server replies, certificate names, UIDs and header fields, and none of
// them may act on the terminal or the log viewer of the person reading.
type safeHandler struct{ h slog.Handler }

func (s safeHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s safeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		safe[i] = safeAttr(a)
	}
	return safeHandler{s.h.WithAttrs(safe)}
}

func (s safeHandler) WithGroup(name string) slog.Handler {
	return safeHandler{s.h.WithGroup(termsafe.String(name))}
}

func (s safeHandler) Handle(ctx context.Context, r slog.Record) error {
	safe := slog.NewRecord(r.Time, r.Level, termsafe.Lines(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		safe.AddAttrs(safeAttr(a))
		return true
	})
	return s.h.Handle(ctx, safe)
}

// safeAttr sanitises an attribute's key and value; numbers, times and
// durations pass as they are.
func safeAttr(a slog.Attr) slog.Attr {
	a.Key = termsafe.String(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(termsafe.Lines(v.String()))
	case slog.KindAny:
		a.Value = slog.StringValue(termsafe.Lines(fmt.Sprint(v.Any())))
	case slog.KindGroup:
		g := v.Group()
		safe := make([]any, len(g))
		for i, ga := range g {
			safe[i] = safeAttr(ga)
		}
		a.Value = slog.GroupValue(slog.Group("", safe...).Value.Group()...)
	default:
		a.Value = v
	}
	return a
}

// underJournal reports whether w is the stream systemd connected to the
// journal: $JOURNAL_STREAM names its device and inode (systemd.exec(5)).
// Children inherit the variable, so the descriptor itself is checked.
func underJournal(w io.Writer) bool {
	js := os.Getenv("JOURNAL_STREAM")
	f, ok := w.(*os.File)
	if js == "" || !ok {
		return false
	}
	devStr, inoStr, ok := strings.Cut(js, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devStr, 10, 64)
	ino, err2 := strconv.ParseUint(inoStr, 10, 64)
	var st syscall.Stat_t
	if err1 != nil || err2 != nil || syscall.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
