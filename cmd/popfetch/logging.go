package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// humanHandler writes log records as one line each, the way a person at a
// terminal or reading a cron mail wants them:
//
//	popfetch: work: 3 new messages, 3 delivered (12 KiB), 3 deleted
//	popfetch: work: warning: message larger than size_limit left on the server uid=... size=...
//
// The "account" attribute becomes the prefix; the others follow as
// key=value pairs.
type humanHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Leveler
	attrs []slog.Attr
}

func newHumanHandler(w io.Writer, level slog.Leveler) *humanHandler {
	return &humanHandler{mu: &sync.Mutex{}, w: w, level: level}
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
	b.WriteString("popfetch: ")
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
	b.WriteString(r.Message)
	for _, a := range rest {
		v := a.Value.Resolve().String()
		if v == "" || strings.ContainsAny(v, " \"=\t") {
			v = fmt.Sprintf("%q", v)
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
