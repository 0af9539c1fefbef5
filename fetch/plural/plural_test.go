package plural

import "testing"

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 messages"}, {1, "1 message"}, {2, "2 messages"}, {-1, "-1 messages"}} {
		if got := Count(tc.n, "message", "messages"); got != tc.want {
			t.Errorf("Count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := Count(1, "delivery is", "deliveries are"); got != "1 delivery is" {
		t.Errorf("got %q", got)
	}
}
