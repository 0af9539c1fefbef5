// Package plural writes a count with its noun in the right number, for
// messages shown to people: "1 message", "2 messages", "0 messages".
package plural

import "strconv"

// Count returns n followed by one if n is 1, by many otherwise:
// Count(1, "UID", "UIDs") is "1 UID".
func Count[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return strconv.FormatInt(int64(n), 10) + " " + one
	}
	return strconv.FormatInt(int64(n), 10) + " " + many
}
