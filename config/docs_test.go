package config

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
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
	for _, rt := range []reflect.Type{reflect.TypeOf(rawAccount{}), reflect.TypeOf(rawDaemon{}), reflect.TypeOf(rawOAuth2{})} {
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
