package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Size is a number of octets. In TOML it is an integer or a string with a
// unit: "50MiB", "10M", "500k" (K, M, G and KiB, MiB, GiB are powers of
// 1024; KB, MB, GB powers of 1000).
type Size int64

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d is negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		*s = Size(n)
		return err
	}
	return fmt.Errorf("expected a size, an integer or a string like \"50MiB\"; found %s", describe(v, ""))
}

// ParseSize parses a size such as "50MiB" (see Size).
func ParseSize(text string) (int64, error) {
	t := strings.TrimSpace(text)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KIB": 1 << 10, "KB": 1e3,
		"M": 1 << 20, "MIB": 1 << 20, "MB": 1e6,
		"G": 1 << 30, "GIB": 1 << 30, "GB": 1e9,
	}[strings.ToUpper(unit)]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f < 0 || num == "" {
		return 0, fmt.Errorf("bad size %q: want a number with an optional unit, like \"50MiB\"", text)
	}
	if f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", text)
	}
	return int64(f * mult), nil
}

// Duration is a time.Duration. In TOML it is a string such as "5m",
// "1h30m" (Go syntax), "30d" or "1d12h" (days of 24 hours), or an integer
// number of seconds.
type Duration time.Duration

// ParseDuration parses a duration as Duration takes it from a string.
func ParseDuration(text string) (time.Duration, error) {
	t := strings.TrimSpace(text)
	var days time.Duration
	if i := strings.IndexByte(t, 'd'); i > 0 {
		n, err := strconv.Atoi(t[:i])
		if err != nil || n < 0 || n > 100_000 {
			return 0, fmt.Errorf("bad duration %q: want e.g. \"90s\", \"5m\", \"1h30m\" or \"30d\"", text)
		}
		days, t = time.Duration(n)*24*time.Hour, t[i+1:]
		if t == "" {
			return days, nil
		}
	}
	x, err := time.ParseDuration(t)
	if err != nil || x < 0 {
		return 0, fmt.Errorf("bad duration %q: want e.g. \"90s\", \"5m\", \"1h30m\" or \"30d\"", text)
	}
	return days + x, nil
}

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("duration %d is negative", v)
		}
		*d = Duration(time.Duration(v) * time.Second)
		return nil
	case string:
		x, err := ParseDuration(v)
		*d = Duration(x)
		return err
	}
	return fmt.Errorf("expected a duration, a string like \"5m\" or a number of seconds; found %s", describe(v, ""))
}

// Command is a program and its arguments. In TOML it is an array of
// strings, or one string split into words the way a POSIX shell splits
// them (quotes and backslashes), though it is never run by a shell: pipes,
// redirections and variables are not interpreted. A "~/" at the start of a
// word is the home directory.
type Command []string

// UnmarshalTOML implements toml.Unmarshaler.
func (c *Command) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		words, err := SplitWords(v)
		if err != nil {
			return err
		}
		*c = words
	case []any:
		out := make([]string, len(v))
		for i, w := range v {
			s, ok := w.(string)
			if !ok {
				return fmt.Errorf("command element %d: expected a string, found %s", i+1, describe(w, ""))
			}
			out[i] = s
		}
		*c = out
	default:
		return fmt.Errorf("expected a command, a string or a list of strings; found %s", describe(v, ""))
	}
	if len(*c) == 0 || (*c)[0] == "" {
		return errors.New("command is empty")
	}
	return nil
}

// SplitWords splits s into words like a POSIX shell: whitespace separates
// words, single quotes keep everything literally, double quotes keep
// everything but a backslash before ", \, $ or `, and an unquoted backslash
// keeps the next character. Nothing is expanded.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case ch == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			inWord = true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
