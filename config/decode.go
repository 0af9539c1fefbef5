package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// decoder fills the raw structs from a TOML document decoded into plain
// maps, checking each key's type itself: toml.Decode stops at the first
// mismatch, and a file's problems are reported all at once. A key of the
// wrong type is left unset, and recorded in bad by its path.
type decoder struct {
	problems []string
	bad      map[string]bool // paths of the keys of the wrong type
}

// fail records a problem of the key at path.
func (d *decoder) fail(path, format string, args ...any) {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[path] = true
	d.problems = append(d.problems, path+": "+fmt.Sprintf(format, args...))
}

// decode sets v from val, the value of the key at path, and reports
// whether it could. Paths are written as the unknown-key messages write
// them: "defaults.keep", "account[2].oauth2.scopes".
func (d *decoder) decode(v reflect.Value, val any, path string) bool {
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		nv := reflect.New(t.Elem())
		if !d.decode(nv.Elem(), val, path) {
			return false
		}
		v.Set(nv)
		return true
	}
	if u, ok := v.Addr().Interface().(toml.Unmarshaler); ok {
		if err := u.UnmarshalTOML(val); err != nil {
			d.fail(path, "%v", err)
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		table, ok := val.(map[string]any)
		if !ok {
			d.fail(path, "expected a table, found %s", describe(val, path))
			return false
		}
		d.table(v, table, path)
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			d.fail(path, "expected a string, found %s", describe(val, path))
			return false
		}
		v.SetString(s)
	case reflect.Int:
		n, ok := val.(int64)
		if !ok || v.OverflowInt(n) {
			d.fail(path, "expected an integer, found %s", describe(val, path))
			return false
		}
		v.SetInt(n)
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			d.fail(path, "expected true or false, found %s", describe(val, path))
			return false
		}
		v.SetBool(b)
	case reflect.Slice:
		return d.slice(v, val, path)
	default:
		d.fail(path, "cannot be set (a bug: field of type %s)", t)
		return false
	}
	return true
}

// table sets the fields of the struct v from a TOML table, and reports
// each key that v has no field for.
func (d *decoder) table(v reflect.Value, table map[string]any, path string) {
	t := v.Type()
	fields := map[string]int{}
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		fields[name] = i
		names = append(names, name)
	}
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prefix := path
	if prefix != "" {
		prefix += "."
	}
	for _, k := range keys {
		i, ok := fields[k]
		if !ok {
			msg := fmt.Sprintf("%s%s: unknown key", prefix, k)
			if s := Nearest(k, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.problems = append(d.problems, msg)
			continue
		}
		d.decode(v.Field(i), table[k], prefix+k)
	}
}

// slice sets v, a slice of strings or of tables, from a TOML array.
func (d *decoder) slice(v reflect.Value, val any, path string) bool {
	elem := v.Type().Elem()
	var items []any
	switch a := val.(type) {
	case []any:
		items = a
	case []map[string]any:
		for _, m := range a {
			items = append(items, m)
		}
	default:
		if elem.Kind() == reflect.Struct {
			d.fail(path, "expected tables ([[%s]]), found %s", path[strings.LastIndexByte(path, '.')+1:], describe(val, path))
		} else {
			d.fail(path, "expected a list of strings, found %s", describe(val, path))
		}
		return false
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	ok := true
	for i, item := range items {
		if elem.Kind() == reflect.Struct {
			ok = d.decode(out.Index(i), item, fmt.Sprintf("%s[%d]", path, i+1)) && ok
			continue
		}
		s, isStr := item.(string)
		if !isStr {
			d.fail(path, "expected a list of strings, found %s in it", describe(item, path))
			return false
		}
		out.Index(i).SetString(s)
	}
	v.Set(out)
	return ok
}

// maxShown is the most characters of a value a message quotes.
const maxShown = 40

// describe says what a TOML value is, for a message: the value itself
// when it is short (`"yes"`, `5`, `true`), its kind otherwise. The value
// of a secret's key is never shown, whatever its type.
func describe(val any, path string) string {
	key := path[strings.LastIndexAny(path, ".]")+1:]
	secret := secretKeyRE().MatchString(key + " =")
	switch v := val.(type) {
	case string:
		if secret {
			return "a string"
		}
		if utf8.RuneCountInString(v) > maxShown {
			return "a string of " + fmt.Sprint(utf8.RuneCountInString(v)) + " characters"
		}
		return fmt.Sprintf("%q", v)
	case int64, float64:
		if secret {
			return "a number"
		}
		return fmt.Sprint(v)
	case bool:
		return fmt.Sprint(v)
	case time.Time:
		return "a date or time"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", val)
}
