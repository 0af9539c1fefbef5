package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popfetch/popfetch/deliver/gmail"
	"github.com/popfetch/popfetch/deliver/gmail/gmailtest"
	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
	"github.com/popfetch/popfetch/fetch/pop3/pop3test"
	"github.com/popfetch/popfetch/uidstore"
)

// gmailE2E is a POP3 mailbox of n messages with Message-IDs, an OAuth
// provider, the Gmail API's fake, and an account that imports into it.
type gmailE2E struct {
	*cliFixture
	api  *gmailtest.Server
	prov *oauth2test.Provider
}

func newGmailE2E(t *testing.T, n int, gmailKeys string) *gmailE2E {
	t.Helper()
	var msgs []pop3test.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("u%d", i), Data: []byte(fmt.Sprintf(
			"Message-ID: <%d.e2e@isp.example>\nDate: Mon, 2 Nov 2026 10:%02d:00 +0000\nFrom: b@example.com\nSubject: test %d\n\nbody %d\n", i, i, i, i))})
	}
	srv, err := pop3test.NewServer(pop3test.Config{User: "alice", Password: "wonderland"}, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "refresh-gmail"})
	t.Cleanup(prov.Close)
	api := gmailtest.New()
	t.Cleanup(api.Close)
	var tokens []string
	for i := 1; i <= 10; i++ {
		tokens = append(tokens, oauth2test.AccessToken(i))
	}
	api.SetTokens(tokens...)
	dir := t.TempDir()
	f := &cliFixture{t: t, srv: srv, dir: dir, config: filepath.Join(dir, "config.toml"),
		maildir: filepath.Join(dir, "Mail"), stateDir: filepath.Join(dir, "state")}
	host, port, _ := strings.Cut(srv.Addr(), ":")
	f.writeConfig(fmt.Sprintf(`
[[account]]
name = "test"
server = %q
port = %s
tls = "none"
allow_insecure_auth = true
user = "alice"
password = "wonderland"
timeout = "5s"

[account.gmail]
api_url = %q
%s
[account.gmail.oauth2]
token_url = %q
client_id = "popfetch-test"
scopes = ["gmail"]
`, host, port, api.URL, gmailKeys, prov.URL()+"/token"), 0o600)
	return &gmailE2E{cliFixture: f, api: api, prov: prov}
}

// authorize writes the Gmail side's token file, as popfetch auth
// --target would.
func (e *gmailE2E) authorize() {
	dir := filepath.Join(e.stateDir, "oauth2")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.gmail.json"), []byte(`{"refresh_token": "refresh-gmail"}`), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// check asserts that Gmail holds each of the n messages once, and that
// the fake saw no request against the contract.
func (e *gmailE2E) check(n int) {
	e.t.Helper()
	count := map[string]int{}
	for _, m := range e.api.Messages() {
		count[m.MessageID]++
		if m.InternalDateSource != "dateHeader" {
			e.t.Errorf("%s: internalDateSource %q", m.MessageID, m.InternalDateSource)
		}
		if !strings.Contains(string(m.Raw), "\r\nSubject: test ") || strings.Contains(strings.ReplaceAll(string(m.Raw), "\r\n", ""), "\n") {
			e.t.Errorf("%s arrived as %q", m.MessageID, m.Raw)
		}
	}
	for i := 1; i <= n; i++ {
		if c := count[fmt.Sprintf("<%d.e2e@isp.example>", i)]; c != 1 {
			e.t.Errorf("message %d is in Gmail %d times", i, c)
		}
	}
	if len(count) != n {
		e.t.Errorf("%d distinct messages in Gmail, want %d", len(count), n)
	}
	if v := e.api.Violations(); len(v) > 0 {
		e.t.Errorf("requests against the contract: %v", v)
	}
}

// TestGmailTargetE2E: the built binary fetches from POP3 and imports into
// the Gmail API's fake, with a label created on first use, and faults on
// the way (rate limit, server errors, a lost reply, a cut upload, a
// refused token) that lose and duplicate nothing.
func TestGmailTargetE2E(t *testing.T) {
	e := newGmailE2E(t, 6, `labels = ["INBOX", "From ISP"]`)
	e.authorize()
	e.api.Inject(
		gmailtest.Fault{Op: "import", Kind: gmailtest.Fault429, RetryAfter: "1"},
		gmailtest.Fault{Op: "import", Kind: gmailtest.Fault500Done},
		gmailtest.Fault{Op: "import", Kind: gmailtest.FaultLoseReply},
		gmailtest.Fault{Op: "import", Kind: gmailtest.FaultDrop},
		gmailtest.Fault{Op: "import", Kind: gmailtest.Fault401},
	)
	code, out, errOut, took := e.runBin("-v", "test")
	if code != exitMail {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	e.check(6)
	var isp string
	for _, l := range e.api.Labels() {
		if l.Name == "From ISP" {
			isp = l.ID
		}
	}
	for _, m := range e.api.Messages() {
		if fmt.Sprint(m.LabelIDs) != fmt.Sprint([]string{"INBOX", isp}) {
			t.Errorf("%s has labels %v", m.MessageID, m.LabelIDs)
		}
	}
	if left := len(e.srv.Messages()); left != 0 {
		t.Errorf("%d messages left on the POP3 server", left)
	}
	t.Logf("6 messages through 5 faults in %v; requests: %v", took.Round(1e6), e.api.Ops())
	if code, out, errOut, _ := e.runBin("test"); code != exitNoMail {
		t.Errorf("second run: exit %d\n%s%s", code, out, errOut)
	}
	e.check(6)
}

// TestGmailTargetSettleE2E: a run that cannot tell whether an import
// arrived (its reply lost, and Gmail's search failing too) leaves the
// message on the server, pending; the next run finds it in Gmail by its
// Message-ID and does not import it again.
func TestGmailTargetSettleE2E(t *testing.T) {
	e := newGmailE2E(t, 3, "")
	e.authorize()
	e.api.Inject(gmailtest.Fault{Op: "import", Kind: gmailtest.FaultLoseReply},
		gmailtest.Fault{Op: "messages.list", Kind: gmailtest.Fault403Scope})
	code, out, errOut, _ := e.runBin("test")
	if code != exitMail || !strings.Contains(out+errOut, "delivery failed; message left on the server uid=u1") ||
		!strings.Contains(out+errOut, "the outcome is unknown") {
		t.Fatalf("exit %d, want %d with u1 failed\n%s%s", code, exitMail, out, errOut)
	}
	if len(e.srv.Messages()) != 1 {
		t.Fatalf("%d messages on the POP3 server, want the one whose import is unknown", len(e.srv.Messages()))
	}
	code, out, errOut, _ = e.runBin("-v", "test")
	if code != exitMail && code != exitNoMail {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out+errOut, "interrupted run") {
		t.Errorf("the second run did not say it settled a pending delivery:\n%s%s", out, errOut)
	}
	e.check(3)
	if left := len(e.srv.Messages()); left != 0 {
		t.Errorf("%d messages left on the POP3 server", left)
	}
}

// TestGmailTargetFirstRunE2E: the first-time user's mistakes: no token
// yet (the error says what to run), a label Gmail keeps for itself.
func TestGmailTargetFirstRunE2E(t *testing.T) {
	e := newGmailE2E(t, 1, "")
	code, out, errOut, _ := e.runBin("test")
	if code == exitMail || !strings.Contains(out+errOut, "popfetch auth --target test") {
		t.Errorf("without a token: exit %d\n%s%s", code, out, errOut)
	}
	if n := len(e.api.Messages()); n != 0 || len(e.srv.Messages()) != 1 {
		t.Errorf("%d imported, %d left on the server", n, len(e.srv.Messages()))
	}
	e2 := newGmailE2E(t, 1, `labels = ["Sent"]`)
	code, out, errOut, _ = e2.runBin("test")
	if code != exitConfig || !strings.Contains(out+errOut, `label "Sent" is Gmail's own`) {
		t.Errorf("label Sent: exit %d\n%s%s", code, out, errOut)
	}
}

// gmailKillKey tells kill-loop messages apart: by Message-ID, or for one
// without, by its Subject (each has its own).
func gmailKillKey(body []byte) string {
	if id := messageID(body); id != "" {
		return id
	}
	if m := subjectRE.FindSubmatch(body); m != nil {
		return "subject " + string(m[1])
	}
	return ""
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: ([^\n]*)`)

// gmailKillRounds is how many runs the Gmail kill loop kills per mailbox
// before its clean run: the later kills land in the settling of what the
// earlier left pending, and a mailbox costs more to set up than a run.
const gmailKillRounds = 4

// TestFaultKillLoopGmail is the kill loop from the private Dovecot's POP3
// into the Gmail API's fake over HTTP on loopback, the access token from
// the in-process OAuth provider: popfetch is killed four times in a row
// per mailbox, at random moments (connecting, settling what the previous
// kill left pending, between an import's request and its reply, before
// the UIDs are committed), then runs cleanly until the mailbox is empty.
// Every message must be in Gmail, byte for byte below popfetch's Received
// field; a message with a Message-ID exactly once. One in ten has none:
// docs/reliability.md promises it is never lost, and imported again only
// if it was the message being imported when the run died: at most one
// extra copy per kill, of a message whose pending record it left.
func TestFaultKillLoopGmail(t *testing.T) {
	dc := startDovecot(t)
	const n, noID = 150, 10 // every noID-th message has no Message-ID
	var mailboxes, pendingAtKill, pendingNoID, searches, found, twice int
	runKillLoop(t, killLoopIterations(t, 50), func(i int) *killLoop {
		if i >= 0 { // not the calibration
			mailboxes++
		}
		user := fmt.Sprintf("gkill%d", i+1)
		e := newE2E(t, dc, user, "none", "")
		msgs := killLoopMessages(n, 1024, user)
		for j := 0; j < len(msgs); j += noID {
			msgs[j] = regexp.MustCompile(`(?m)^Message-ID: [^\n]*\n`).ReplaceAll(msgs[j], nil)
		}
		if err := dc.Deliver(user, msgs...); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Index(context.Background(), user, "pw-"+user); err != nil {
			t.Fatalf("index: %v", err)
		}
		prov := oauth2test.NewProvider(oauth2test.Config{ClientID: "popfetch-test", Refresh: "refresh-gmail"})
		api := gmailtest.New()
		// Google's search index lags the mailbox: an import the kill cut
		// off may not be found at once. settle_grace (below) waits for it.
		api.SetSearchLag(300 * time.Millisecond)
		var tokens []string
		for j := 1; j <= 100; j++ {
			tokens = append(tokens, oauth2test.AccessToken(j))
		}
		api.SetTokens(tokens...)
		data, err := os.ReadFile(e.config)
		if err != nil {
			t.Fatal(err)
		}
		e.writeConfig(strings.Replace(string(data), fmt.Sprintf("maildir = %q\n", e.maildir), "", 1) + fmt.Sprintf(`
[account.gmail]
api_url = %q
settle_grace = "1s"

[account.gmail.oauth2]
token_url = %q
client_id = "popfetch-test"
scopes = ["gmail"]
`, api.URL, prov.URL()+"/token"))
		state := filepath.Join(e.dir, "state")
		if err := os.MkdirAll(filepath.Join(state, "oauth2"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, "oauth2", user+".gmail.json"), []byte(`{"refresh_token": "refresh-gmail"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		// The kills, and the messages without a Message-ID whose pending
		// records they left: each kill may leave one such message
		// imported but not recorded (the one being imported; the UIDs of
		// the others are recorded as each import returns).
		kills, noIDPending := 0, 0
		k := &killLoop{t: t, bin: e.bin, dir: e.dir, config: e.config, maildir: filepath.Join(e.dir, "no-maildir"),
			sent: map[string][]byte{}, key: gmailKillKey, rounds: gmailKillRounds,
			left:     func() int { return dc.Count(user) },
			progress: func() int { return len(api.Messages()) },
			each: func(fn func(string, []byte)) {
				for _, m := range api.Messages() {
					if m.InternalDateSource != "dateHeader" {
						t.Errorf("%s: internalDateSource %q", m.ID, m.InternalDateSource)
					}
					body := bytes.ReplaceAll(m.Raw, []byte("\r\n"), []byte("\n"))
					fn("Gmail message "+m.ID, body[len(ownReceived.Find(body)):])
				}
			},
			afterKill: func() {
				s, err := uidstore.Open(filepath.Join(state, "uids.db"), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				kills++
				ps, err := s.Pending(uidstore.Key{Server: "127.0.0.1", Port: dc.PlainPort, User: user})
				if err != nil {
					t.Fatal(err)
				}
				pendingAtKill += len(ps)
				for _, p := range ps {
					if p.Kind != gmail.Kind {
						t.Errorf("a pending record of kind %q", p.Kind)
					}
					if p.Name == "<>" {
						noIDPending++
						pendingNoID++
					}
				}
			},
			done: func() {
				s, f := api.Searches()
				searches, found = searches+s, found+f
				if v := api.Violations(); len(v) > 0 {
					t.Errorf("requests against the contract: %q", v)
				}
				api.Close()
				prov.Close()
			}}
		k.excused = func(got map[string]int) int {
			extra := 0
			for key, c := range got {
				if strings.HasPrefix(key, "subject ") && c > 1 {
					extra += c - 1
				}
			}
			allowed := min(kills, noIDPending)
			if extra > allowed {
				t.Errorf("%s: %d extra copies of messages without a Message-ID after %d kills that left %d of them pending; want at most %d",
					user, extra, kills, noIDPending, allowed)
			}
			twice += min(extra, allowed)
			return min(extra, allowed)
		}
		for _, m := range msgs {
			k.sent[gmailKillKey(m)] = m
		}
		if len(k.sent) != n {
			t.Fatalf("%d distinct messages, want %d", len(k.sent), n)
		}
		return k
	})
	t.Logf("KILL LOOP (Gmail): %d mailboxes of %d messages (%d without a Message-ID), each killed up to %d times then run cleanly; "+
		"%d pending records found after the kills (%d of messages without a Message-ID); %d settled by a search (rfc822msgid:), "+
		"%d of them found delivered, the rest imported again; %d messages without a Message-ID imported twice (allowed: the one being imported at a kill)",
		mailboxes, n, n/noID, gmailKillRounds, pendingAtKill, pendingNoID, searches, found, twice)
}
