package fetch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// BenchmarkPollSmallMessages fetches 500 messages of 4 KiB from the
// in-process server into a Maildir, deleting them, per operation: the
// client's cost per poll, with allocations (run with TMPDIR=/dev/shm to
// take the disk out). The server's work is in the figures too.
func BenchmarkPollSmallMessages(b *testing.B) {
	const n = 500
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 64)
	msgs := make([]pop3test.Message, n)
	for i := range msgs {
		msgs[i] = pop3test.Message{UID: fmt.Sprintf("uid-%d", i), Data: append([]byte(fmt.Sprintf("Subject: message %d\n\n", i)), body...)}
	}
	srv, err := pop3test.NewServer(pop3test.Config{Pipelining: true, User: "alice", Password: "wonderland"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	host, port := splitAddr(&testing.T{}, srv.Addr())
	acct := &Account{
		Name: "bench", Server: host, Port: port, TLS: TLSNone, AllowInsecureAuth: true, Auth: AuthUser,
		User: "alice", Password: func(context.Context) (string, error) { return "wonderland", nil },
		Timeout: 10 * time.Second, AddReceived: true,
	}
	dir := b.TempDir()
	store, err := uidstore.Open(filepath.Join(dir, "uids.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv.Add(msgs...)
		md := filepath.Join(dir, fmt.Sprintf("Maildir%d", i))
		d, err := deliver.NewMaildir(md)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := store.ForgetAll(acct.Key()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err := Poll(context.Background(), acct, store, d, nil)
		b.StopTimer()
		d.Close()
		if err != nil || st.Delivered != n {
			b.Fatalf("%+v, %v", st, err)
		}
		os.RemoveAll(md)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}
