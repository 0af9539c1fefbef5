package config

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestReferenceListsEveryKey keeps docs/config.md and the config struct in
// step: every key popfetch accepts has a row in the reference table, and
// every row names a key popfetch accepts.
func TestReferenceListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	accepted := map[string]bool{}
	for _, rt := range []reflect.Type{reflect.TypeOf(rawAccount{}), reflect.TypeOf(rawDaemon{}), reflect.TypeOf(rawOAuth2{}), reflect.TypeOf(rawIMAP{}), reflect.TypeOf(rawGmail{})} {
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("toml"), ",")
			accepted[name] = true
		}
	}
	var missing, extra []string
	for k := range accepted {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !accepted[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("docs/config.md is out of step: undocumented keys %v, documented keys that do not exist %v", missing, extra)
	}
}

// TestReferenceDefaults keeps the default column of docs/config.md true:
// for every key that has a fixed default, the documented literal is the
// value an account that leaves the key out gets (as config check prints
// it); a key without one (the dump says "not set") documents no literal.
func TestReferenceDefaults(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // key -> its default cell
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	cfg, err := Parse("c.toml", "[[account]]\nname = \"a\"\nserver = \"s\"\nuser = \"u\"\nmaildir = \"/m\"\n")
	if err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	if err := Dump(&dump, cfg); err != nil {
		t.Fatal(err)
	}
	// Keys whose value comes from the account or the machine, not a
	// fixed default.
	derived := map[string]bool{"name": true, "server": true, "user": true, "maildir": true, "port": true, "recipient": true}
	set := regexp.MustCompile(`(?m)^([a-z0-9_]+) = (.*)$`)
	unset := regexp.MustCompile(`(?m)^# ([a-z0-9_]+): not set`)
	checked := 0
	for _, m := range set.FindAllStringSubmatch(dump.String(), -1) {
		key, value := m[1], m[2]
		if derived[key] {
			continue
		}
		cell, ok := documented[key]
		if !ok {
			continue // TestReferenceListsEveryKey reports it
		}
		lit := regexp.MustCompile("^`([^`]*)`$").FindStringSubmatch(cell)
		if lit == nil {
			t.Errorf("%s: the default is %s, but the reference gives no literal (%q)", key, value, cell)
			continue
		}
		if !sameTOMLValue(t, lit[1], value) {
			t.Errorf("%s: the reference says the default is %s, but it is %s", key, lit[1], value)
		}
		checked++
	}
	for _, m := range unset.FindAllStringSubmatch(dump.String(), -1) {
		key := m[1]
		if cell, ok := documented[key]; ok && regexp.MustCompile("^`[^`]*`$").MatchString(cell) {
			t.Errorf("%s: not set by default, but the reference gives the default %s", key, cell)
		}
	}
	if checked < 15 {
		t.Errorf("only %d defaults checked; the dump's format changed?", checked)
	}
}

// sameTOMLValue compares two TOML values, durations by their length.
func sameTOMLValue(t *testing.T, a, b string) bool {
	var va, vb map[string]any
	if _, err := toml.Decode("v = "+a, &va); err != nil {
		t.Errorf("%s: %v", a, err)
		return false
	}
	if _, err := toml.Decode("v = "+b, &vb); err != nil {
		t.Errorf("%s: %v", b, err)
		return false
	}
	if sa, ok := va["v"].(string); ok {
		if sb, ok := vb["v"].(string); ok {
			da, erra := ParseDuration(sa)
			db, errb := ParseDuration(sb)
			if erra == nil && errb == nil {
				return da == db
			}
		}
	}
	return reflect.DeepEqual(va, vb)
}
