package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/fetch/schedule"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// statusFile is what the daemon keeps in STATE/status.json for
// "popfetch status": per account, the last poll, its result, what was
// fetched, the next poll and the backoff; for the daemon, its health.
type statusFile struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Stopped time.Time `json:"stopped,omitzero"` // set when the daemon ended
	Config  string    `json:"config"`
	// ConfigLoaded is when the configuration in force was read: at the
	// start, or by the last reload that worked.
	ConfigLoaded time.Time `json:"config_loaded,omitzero"`
	// ReloadFailed and ReloadError tell of the last reload (SIGHUP) if
	// it failed: the daemon kept the configuration read at ConfigLoaded.
	// A reload that works clears them.
	ReloadFailed time.Time `json:"reload_failed,omitzero"`
	ReloadError  string    `json:"reload_error,omitempty"`
	// Running is filled in by "popfetch status": whether the daemon
	// holds the state directory now.
	Running    bool   `json:"running"`
	Goroutines int    `json:"goroutines"`
	Memory     uint64 `json:"memory_bytes"` // memory the Go runtime holds, released pages excluded
	// Lateness counts how late the daemon's polls started (from when each
	// was due), as a histogram.
	Lateness schedule.Lateness    `json:"lateness"`
	Accounts []schedule.JobStatus `json:"accounts"`
}

// clearActivity drops what only a running daemon can say: which polls run
// and when the next ones come.
func (st *statusFile) clearActivity() {
	for i := range st.Accounts {
		st.Accounts[i].Running = false
		st.Accounts[i].Next = time.Time{}
	}
}

func statusPath(stateDir string) string { return filepath.Join(stateDir, "status.json") }

// socketPath is where a running daemon answers "popfetch status".
func socketPath(stateDir string) string { return filepath.Join(stateDir, "daemon.sock") }

// statusWriter gives the daemon's status to "popfetch status": over a
// Unix socket in the state directory while the daemon runs, and in the
// status file, written at the start, once a minute and when the daemon
// stops, for when it does not run (or was killed). Encoding the status
// costs in proportion to the accounts, so it is done when someone asks,
// not every time a poll ends.
type statusWriter struct {
	path    string
	sock    string
	config  string
	sched   *schedule.Scheduler
	started time.Time
	log     *slog.Logger
	// wake and quit answer the control requests (control.go); nil
	// answers them with an error.
	wake func(ctx context.Context, config string) controlReply
	quit func() int

	mu           sync.Mutex
	configLoaded time.Time
	reloadFailed time.Time
	reloadError  string
}

// reloaded records a reload of the configuration, and err if it failed.
func (w *statusWriter) reloaded(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.reloadFailed, w.reloadError = time.Now(), err.Error()
		return
	}
	w.configLoaded, w.reloadFailed, w.reloadError = time.Now(), time.Time{}, ""
}

// statusEvery is how often the status file is rewritten while the daemon
// runs.
const statusEvery = time.Minute

func newStatusWriter(stateDir, configPath string, sched *schedule.Scheduler, log *slog.Logger) *statusWriter {
	now := time.Now()
	return &statusWriter{path: statusPath(stateDir), sock: socketPath(stateDir), config: configPath, sched: sched,
		started: now, configLoaded: now, log: log}
}

// run writes the status file once a minute and answers on the socket
// until ctx ends.
func (w *statusWriter) run(ctx context.Context) {
	if ln, err := w.listen(); err != nil {
		w.log.Warn("popfetch status will show the status file, written once a minute: " + err.Error())
	} else {
		defer ln.Close()
		go w.serve(ctx, ln)
	}
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := w.write(time.Time{}); err != nil {
				w.log.Warn("could not write the status file: " + err.Error())
			}
		case <-ctx.Done():
			return
		}
	}
}

// listen opens the status socket, readable and writable by this user
// alone. A socket left by a daemon that died is replaced: the caller
// holds the daemon lock, so no daemon answers on it.
func (w *statusWriter) listen() (net.Listener, error) {
	os.Remove(w.sock)
	ln, err := net.Listen("unix", w.sock)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(w.sock, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serve answers each connection's request (see control.go), then closes
// it; at most maxControlConns at once, the others are closed at once.
func (w *statusWriter) serve(ctx context.Context, ln net.Listener) {
	slots := make(chan struct{}, maxControlConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			conn.Close()
			continue
		}
		go func() {
			defer func() { <-slots }()
			defer conn.Close()
			w.answer(ctx, conn)
		}()
	}
}

// answer answers one request on conn.
func (w *statusWriter) answer(ctx context.Context, conn net.Conn) {
	if !peerAllowed(conn) {
		return
	}
	req, err := readRequest(conn)
	var reply controlReply
	switch {
	case err != nil:
		reply = controlReply{Reply: "error", Error: err.Error()}
	case req.Op == opStatus:
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		bw := bufio.NewWriter(conn)
		if encodeStatus(bw, w.snapshot(time.Time{})) == nil {
			bw.Flush()
		}
		return
	case req.Op == opQuit && w.quit != nil:
		reply = controlReply{Reply: opQuit, PID: w.quit()}
	case req.Op == opPoll && w.wake != nil:
		reply = w.wake(ctx, req.Config)
	default:
		reply = controlReply{Reply: "error", Error: "this daemon does not take " + req.Op + " requests"}
	}
	data, err := json.Marshal(reply)
	if err != nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	conn.Write(append(data, '\n'))
}

// snapshot returns the status now; stopped is set when the daemon ends.
func (w *statusWriter) snapshot(stopped time.Time) statusFile {
	st := statusFile{
		PID: os.Getpid(), Started: w.started, Updated: time.Now(), Stopped: stopped, Config: w.config,
		Goroutines: runtime.NumGoroutine(), Memory: goMemory(), Lateness: w.sched.Lateness(), Accounts: w.sched.Status(),
	}
	w.mu.Lock()
	st.ConfigLoaded, st.ReloadFailed, st.ReloadError = w.configLoaded, w.reloadFailed, w.reloadError
	w.mu.Unlock()
	if !stopped.IsZero() {
		st.clearActivity()
	}
	return st
}

// write writes the file now; stopped is set when the daemon ends. The
// file is replaced by a rename, so a reader never sees half of it.
func (w *statusWriter) write(stopped time.Time) error {
	tmp := w.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	err = encodeStatus(bw, w.snapshot(stopped))
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, w.path)
}

// encodeStatus writes st as JSON, one account a line, one account at a
// time: at 10,000 accounts the whole document is megabytes, which
// encoding/json would build in memory first.
func encodeStatus(w io.Writer, st statusFile) error {
	accounts := st.Accounts
	st.Accounts = nil
	head, err := json.Marshal(st)
	if err != nil {
		return err
	}
	// head ends in "accounts":null} (Accounts comes last); the accounts
	// go in place of the null.
	head, ok := bytes.CutSuffix(head, []byte("null}"))
	if !ok {
		return errors.New("status: accounts are not the last field")
	}
	var b bytes.Buffer
	b.Write(head)
	b.WriteByte('[')
	enc := json.NewEncoder(&b)
	for i, a := range accounts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		if err := enc.Encode(a); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		if b.Len() > 32<<10 {
			if _, err := w.Write(b.Bytes()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if len(accounts) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	_, err = w.Write(b.Bytes())
	return err
}

// askDaemon asks the daemon running with stateDir for its status.
func askDaemon(stateDir string) ([]byte, error) {
	return askControl(stateDir, controlRequest{Op: opStatus}, 30*time.Second, nil)
}

// goMemory returns the memory the Go runtime has mapped, less what it has
// returned to the system: close to the process's resident size. It reads
// runtime.MemStats (a pause of microseconds, once per status) rather than
// runtime/metrics, whose initialisation costs every run of popfetch close
// to a millisecond.
func goMemory() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Sys - ms.HeapReleased
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:            "status",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "show what the daemon is doing: per account the last poll, its result, the next poll; exit 0 if it runs, 1 if not",
		ArgsUsage:       "[ACCOUNT...]",
		BashComplete:    completeAccounts,
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON, for scripts"}),
		Action: func(c *cli.Context) error { return statusAction(c) },
	}
}

func statusAction(c *cli.Context) error {
	o := readOptions(c)
	pid, running := daemonRunning(o.stateDir)
	code := exitNoMail
	if running {
		code = exitMail
	}
	var st statusFile
	var data []byte
	var err error
	source := socketPath(o.stateDir)
	if running {
		// The daemon answers itself; the file, written once a minute,
		// serves when it cannot (an older daemon, a state directory
		// whose path is too long for a socket).
		data, err = askDaemon(o.stateDir)
	}
	if !running || err != nil || len(data) == 0 {
		source = statusPath(o.stateDir)
		data, err = os.ReadFile(source)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.PID = pid
		st.Accounts = []schedule.JobStatus{}
		if !c.Bool("json") {
			if running {
				fmt.Fprintf(c.App.Writer, "popfetch daemon: running, pid %d; no status written yet\n", pid)
			} else {
				fmt.Fprintf(c.App.Writer, "popfetch daemon: not running; none has run with state directory %s\n", o.stateDir)
			}
			return statusErr(code)
		}
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
	}
	st.Running = running
	if !running {
		st.clearActivity()
	}
	if names := c.Args().Slice(); len(names) > 0 {
		var sel []schedule.JobStatus
		for _, n := range names {
			i := slices.IndexFunc(st.Accounts, func(a schedule.JobStatus) bool { return a.Name == n })
			if i < 0 {
				return usageError{fmt.Sprintf("the daemon's status has no account named %q%s", n, didYouMean(n, statusNames(st.Accounts)...))}
			}
			sel = append(sel, st.Accounts[i])
		}
		st.Accounts = sel
	}
	if c.Bool("json") {
		out, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		// Errors are server text: encoding/json leaves U+009B (a CSI)
		// and the bidi controls raw.
		fmt.Fprintf(c.App.Writer, "%s\n", termsafe.JSON(out))
		return statusErr(code)
	}
	printStatus(c.App.Writer, st, time.Now())
	return statusErr(code)
}

// printStatus prints the status as a table for people.
func printStatus(w io.Writer, st statusFile, now time.Time) {
	switch {
	case st.Running:
		fmt.Fprintf(w, "popfetch daemon: running, pid %d, since %s (%s); %d goroutines, %s\n",
			st.PID, st.Started.Local().Format("2006-01-02 15:04:05"), ago(now, st.Started),
			st.Goroutines, humanBytes(int64(st.Memory)))
	case !st.Stopped.IsZero():
		fmt.Fprintf(w, "popfetch daemon: not running; it stopped at %s (%s)\n",
			st.Stopped.Local().Format("2006-01-02 15:04:05"), ago(now, st.Stopped))
	default:
		fmt.Fprintf(w, "popfetch daemon: not running; its last status is of %s (%s)\n",
			st.Updated.Local().Format("2006-01-02 15:04:05"), ago(now, st.Updated))
	}
	if st.Running && !st.ReloadFailed.IsZero() {
		fmt.Fprintf(w, "reload failed at %s (%s):\n", st.ReloadFailed.Local().Format("2006-01-02 15:04:05"),
			ago(now, st.ReloadFailed))
		lines := strings.Split(termsafe.Lines(st.ReloadError), "\n")
		if len(lines) > 20 {
			lines = append(lines[:20], fmt.Sprintf("(%d more lines)", len(lines)-20))
		}
		for _, l := range lines {
			if l = strings.TrimSpace(l); l != "" {
				fmt.Fprintf(w, "  %s\n", termsafe.Short(l, 300))
			}
		}
		loaded := "the configuration it read at start"
		if !st.ConfigLoaded.IsZero() {
			loaded = "the configuration it read at " + st.ConfigLoaded.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(w, "  still in force: %s from %s; fix the file and send SIGHUP again\n", loaded, termsafe.String(st.Config))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tLAST POLL\tRESULT\tFETCHED\tIN ALL\tNEXT POLL\tLAST ERROR")
	for _, a := range st.Accounts {
		last := "never"
		switch {
		case a.Running:
			last = "polling now"
		case !a.LastEnd.IsZero():
			last = a.LastEnd.Local().Format("15:04:05") + " (" + ago(now, a.LastEnd) + ")"
		}
		result := orDash(a.LastResult)
		if a.Failures > 1 {
			result += fmt.Sprintf(" (%d in a row)", a.Failures)
		}
		next := "-"
		if a.NeedsAuth {
			next = "stopped: needs popfetch auth"
		}
		if !a.Next.IsZero() {
			next = "now"
			if d := a.Next.Sub(now); d > 0 {
				next = "in " + d.Round(time.Second).String()
			}
			switch {
			case a.Backoff > 0:
				next += " (backoff)"
			case a.LoginDelay > 0:
				// The server's minimum between logins: polls wait for it.
				next += " (server's LOGIN-DELAY " + a.LoginDelay.String() + ")"
			}
		}
		errText := termsafe.Short(a.LastError, 100)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d (%s)\t%d (%s)\t%s\t%s\n", termsafe.String(a.Name), last, termsafe.String(result),
			a.LastFetched, humanBytes(a.LastBytes), a.Fetched, humanBytes(a.Bytes), next, orDash(errText))
	}
	tw.Flush()
}

// orDash returns s, or "-" if s is empty.
func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// ago says how long before now t was, for people.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}

// statusNames are the names of the accounts in a status.
func statusNames(accounts []schedule.JobStatus) []string {
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.Name
	}
	return names
}
