package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/popfetch/popfetch/cmd/internal/delayline"
)

// runIMAP times popfetch fetching from the private Dovecot's POP3 into
// another user's INBOX on its IMAP, each leg through a delay line of its
// own, and counts each leg's round trips. No other tool delivers over
// IMAP: the table has popfetch's row, and a line per leg.
func (b *bench) runIMAP(ctx context.Context, c benchCase, results map[string][]sample) error {
	imapLine, err := delayline.New(b.dc.IMAPAddr(), 0)
	if err != nil {
		return err
	}
	defer imapLine.Close()
	var popRTs, imapRTs []int64
	for r := 0; r < b.runs; r++ {
		user, pass, err := b.newUser()
		if err != nil {
			return err
		}
		dest, destPass, err := b.newUser()
		if err != nil {
			return err
		}
		_, total, err := b.fill(ctx, c, user, pass)
		if err != nil {
			return err
		}
		work := filepath.Join(b.dir, fmt.Sprintf("%s-%d", c.name, r))
		if err := prepare(work); err != nil {
			return err
		}
		conf := filepath.Join(work, "popfetch.toml")
		err = os.WriteFile(conf, []byte(fmt.Sprintf(`[[account]]
name = "bench"
server = "127.0.0.1"
port = %d
tls = "none"
allow_insecure_auth = true
auth = "user"
user = %q
password = %q

[account.imap]
server = "127.0.0.1"
port = %d
tls = "none"
allow_insecure_auth = true
user = %q
password = %q
`, b.line.Port(), user, pass, imapLine.Port(), dest, destPass)), 0o600)
		if err != nil {
			return err
		}
		settle()
		b.line.SetDelay(c.oneWay)
		imapLine.SetDelay(c.oneWay)
		b.line.Reset()
		imapLine.Reset()
		res, err := runTool(work, nil, b.bin, "--config", conf, "--state-dir", filepath.Join(work, "state"), "-q")
		if err != nil {
			return fmt.Errorf("popfetch: %w", err)
		}
		if left := b.dc.Count(user); left != 0 {
			return fmt.Errorf("run %d: %d messages left on the POP3 server", r+1, left)
		}
		if got := b.dc.Count(dest); got != c.count {
			return fmt.Errorf("run %d: the IMAP INBOX holds %d messages, want %d", r+1, got, c.count)
		}
		popRTs, imapRTs = append(popRTs, b.line.RoundTrips()), append(imapRTs, imapLine.RoundTrips())
		results["popfetch"] = append(results["popfetch"], sample{wall: res.Wall, cpu: res.CPU, rss: res.PeakRSS,
			roundTrips: b.line.RoundTrips() + imapLine.RoundTrips(), bytes: total, messages: c.count})
		b.line.SetDelay(0)
		imapLine.SetDelay(0)
	}
	fmt.Printf("\n%s: round trips per run, POP3 leg %v, IMAP leg %v (%v one way on each)\n", c.name, popRTs, imapRTs, c.oneWay)
	return nil
}
