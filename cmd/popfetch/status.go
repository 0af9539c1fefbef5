package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
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

// statusWriter writes the status file when the accounts' state changes,
// at most once a second, and at least once a minute.
type statusWriter struct {
	path    string
	config  string
	sched   *schedule.Scheduler
	started time.Time
	last    []byte    // the accounts as last written
	written time.Time // when
}

func newStatusWriter(stateDir, configPath string, sched *schedule.Scheduler) *statusWriter {
	return &statusWriter{path: statusPath(stateDir), config: configPath, sched: sched, started: time.Now()}
}

func (w *statusWriter) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.update()
		case <-ctx.Done():
			return
		}
	}
}

// update writes the file if the accounts changed or a minute passed.
func (w *statusWriter) update() {
	accounts, _ := json.Marshal(w.sched.Status())
	if bytes.Equal(accounts, w.last) && time.Since(w.written) < time.Minute {
		return
	}
	w.write(time.Time{})
}

// write writes the file now; stopped is set when the daemon ends. The
// file is replaced by a rename, so a reader never sees half of it.
func (w *statusWriter) write(stopped time.Time) error {
	st := statusFile{
		PID: os.Getpid(), Started: w.started, Updated: time.Now(), Stopped: stopped, Config: w.config,
		Goroutines: runtime.NumGoroutine(), Memory: goMemory(), Lateness: w.sched.Lateness(), Accounts: w.sched.Status(),
	}
	if !stopped.IsZero() {
		st.clearActivity()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := w.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, w.path); err != nil {
		return err
	}
	w.last, _ = json.Marshal(st.Accounts)
	w.written = time.Now()
	return nil
}

// goMemory returns the memory the Go runtime has mapped, less what it has
// returned to the system: close to the process's resident size.
func goMemory() uint64 {
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() != metrics.KindUint64 || samples[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return samples[0].Value.Uint64() - samples[1].Value.Uint64()
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
	data, err := os.ReadFile(statusPath(o.stateDir))
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
			return fmt.Errorf("%s: %w", statusPath(o.stateDir), err)
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
				return usageError{fmt.Sprintf("the daemon's status has no account named %q", n)}
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
		fmt.Fprintf(c.App.Writer, "%s\n", out)
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
