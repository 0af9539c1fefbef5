package fetch

import (
	"context"
	"testing"
	"time"

	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
)

func TestPollProgress(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		msgs := testMessages(25)
		f := newFixture(t, pop3test.Config{Pipelining: pipelining}, msgs)
		var calls []Progress
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := Poll(ctx, f.acct, f.store, f.md, &Options{Progress: func(p Progress) { calls = append(calls, p) }}); err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, m := range msgs {
			total += int64(len(m.Data)) + int64(countLines(m.Data)) // listed with CRLF
		}
		first, last := calls[0], calls[len(calls)-1]
		if first.Account != "test" || first.Messages != 25 || first.Bytes != total || first.Done != 0 {
			t.Errorf("pipelining %v: first call %+v, want 25 messages of %d octets", pipelining, first, total)
		}
		if !last.Finished || last.Done != 25 || last.DoneBytes == 0 {
			t.Errorf("pipelining %v: last call %+v", pipelining, last)
		}
		for i := 1; i < len(calls); i++ {
			if calls[i].Done < calls[i-1].Done {
				t.Errorf("progress went back: %+v after %+v", calls[i], calls[i-1])
			}
		}
	}
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
