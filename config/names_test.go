package config

import (
	"regexp"
	"testing"
)

// TestNameRules checks the hand-written name checks against the rules
// they stand for, written as regular expressions (which popfetch no
// longer compiles at every start).
func TestNameRules(t *testing.T) {
	nameRule := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)
	envRule := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	inputs := []string{
		"", "a", "A", "0", "_", ".", "-", "@", "+", "work", "me@example.org", "a.b_c+d-e",
		".hidden", "-x", "@x", "+x", "_x", "a b", "a/b", "a:b", "a\x00", "a\n", "é", "aé",
		"HOME", "_HOME", "9HOME", "HOME9", "HO-ME", "HO.ME", "A_1", "a\tb", "\xff", "ab\xff",
	}
	for _, s := range inputs {
		if got, want := validName(s), nameRule.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, the rule says %v", s, got, want)
		}
		if got, want := validEnvName(s), envRule.MatchString(s); got != want {
			t.Errorf("validEnvName(%q) = %v, the rule says %v", s, got, want)
		}
	}
}

func FuzzNameRules(f *testing.F) {
	for _, s := range []string{"work", "me@example.org", ".x", "HOME", "9a", "a b", "\xff"} {
		f.Add(s)
	}
	nameRule := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)
	envRule := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRule.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, the rule says %v", s, got, want)
		}
		if got, want := validEnvName(s), envRule.MatchString(s); got != want {
			t.Errorf("validEnvName(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
