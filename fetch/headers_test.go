package fetch

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

func TestPollAddedFields(t *testing.T) {
	bodies := map[string]string{
		"has-rp":   "Return-Path: <bounce@lists.example>\nFrom: A <a@example.com>\nSubject: 1\n\nbody\n",
		"from":     "From: \"B b\" <b@example.com>\nSubject: 2\n\nbody\n",
		"no-from":  "Subject: 3\n\nbody\n",
		"bad-from": "From: not an address\nSubject: 4\n\nbody\n",
		"huge-hdr": "X-Big: " + strings.Repeat("y", 70<<10) + "\nFrom: c@example.com\n\nbody\n",
	}
	var msgs []pop3test.Message
	for uid, b := range bodies {
		msgs = append(msgs, pop3test.Message{UID: uid, Data: []byte(b)})
	}
	for _, tc := range []struct {
		name                        string
		deliveredTo, envTo, retPath bool
		received                    bool
		recipient                   string
		want                        map[string]string // UID -> the fields added in front
	}{
		{name: "none", want: map[string]string{}},
		{name: "delivered_to", deliveredTo: true, recipient: "alice@example.org", want: map[string]string{
			"*": "Delivered-To: alice@example.org\n"}},
		{name: "envelope_to", envTo: true, recipient: "alice", want: map[string]string{"*": "X-Envelope-To: alice\n"}},
		{name: "return_path", retPath: true, want: map[string]string{
			"from": "Return-Path: <b@example.com>\n", "has-rp": "", "no-from": "", "bad-from": "", "huge-hdr": ""}},
		{name: "all, with Received", deliveredTo: true, envTo: true, retPath: true, received: true, recipient: "al\nice",
			want: map[string]string{
				"*":    "Delivered-To: al?ice\nX-Envelope-To: al?ice\nReceived: ",
				"from": "Return-Path: <b@example.com>\nDelivered-To: al?ice\nX-Envelope-To: al?ice\nReceived: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, pop3test.Config{}, msgs)
			f.acct.DeliveredTo, f.acct.EnvelopeTo, f.acct.ReturnPath = tc.deliveredTo, tc.envTo, tc.retPath
			f.acct.AddReceived, f.acct.Recipient = tc.received, tc.recipient
			if _, err := f.poll(); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(filepath.Join(f.dir, "new"))
			if len(entries) != len(bodies) {
				t.Fatalf("%d delivered, want %d", len(entries), len(bodies))
			}
			var got []string
			for _, e := range entries {
				raw, _ := os.ReadFile(filepath.Join(f.dir, "new", e.Name()))
				got = append(got, string(raw))
			}
			sort.Strings(got)
			for uid, body := range bodies {
				prefix, ok := tc.want[uid]
				if !ok {
					prefix = tc.want["*"]
				}
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, prefix) && strings.HasSuffix(g, body) &&
						(tc.received || len(g) == len(prefix)+len(body)) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: no delivered message is %q + the message", uid, prefix)
				}
			}
		})
	}
}
