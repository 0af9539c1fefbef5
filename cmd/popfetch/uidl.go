package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// maxUIDLine bounds a line read by "popfetch uidl import": a UID is at
// most 70 characters by RFC 1939, and the store refuses keys over 32 KiB.
const maxUIDLine = 64 << 10

// uidlCommand is "popfetch uidl export|import|forget ACCOUNT [UID...]":
// a look into the UID store, and a way to repair it.
func uidlCommand() *cli.Command {
	return &cli.Command{
		Name:            "uidl",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "list, add or remove the UIDs recorded as delivered for an account",
		ArgsUsage:       "export|import|forget ACCOUNT [UID...]",
		BashComplete:    completeByPosition([]string{"export", "import", "forget"}, 1),
		Description: "export prints the account's recorded UIDs, one per line.\n" +
			"import records the UIDs given, or those read from standard input (one per line), as delivered:\n" +
			"their messages are not fetched again. forget removes the UIDs given (or, with --all, every one):\n" +
			"their messages are fetched again if they are still on the server.\n\n" +
			"A run that was interrupted may have left deliveries pending; the next poll settles them.",
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "all", Usage: "forget: remove every UID of the account"}),
		Action: func(c *cli.Context) error { return uidlAction(c) },
	}
}

func uidlAction(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 2 {
		return usageError{"usage: popfetch uidl export|import|forget ACCOUNT [UID...]"}
	}
	op, name, uids := args[0], args[1], args[2:]
	switch op {
	case "export", "import", "forget":
	default:
		return usageError{fmt.Sprintf("uidl: unknown operation %q%s: use export, import or forget", op, didYouMean(op, "export", "import", "forget"))}
	}
	if op == "export" && len(uids) > 0 {
		return usageError{"uidl export takes no UIDs"}
	}
	if op == "forget" && len(uids) == 0 && !c.Bool("all") {
		return usageError{"uidl forget: name the UIDs to forget, or pass --all"}
	}
	if op == "forget" && len(uids) > 0 && c.Bool("all") {
		return usageError{"uidl forget: either UIDs or --all, not both"}
	}
	o := readOptions(c)
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	accounts, err := cfg.Select([]string{name})
	if err != nil {
		return err
	}
	a := accounts[0]
	key := (&fetch.Account{Server: a.Server, Port: a.Port, User: a.User}).Key()
	store, err := uidstore.Open(storePath(o.stateDir), o.lockTimeout)
	if err != nil {
		return err
	}
	defer store.Close()
	switch op {
	case "export":
		return uidlExport(c, store, key, name)
	case "import":
		return uidlImport(c, store, key, name, uids)
	}
	return uidlForget(c, store, key, name, uids)
}

// uidlExport writes the account's UIDs, one a line.
func uidlExport(c *cli.Context, store *uidstore.Store, key uidstore.Key, name string) error {
	w := bufio.NewWriter(c.App.Writer)
	err := store.Each(key, func(uid string, _ time.Time) error {
		w.WriteString(uid)
		return w.WriteByte('\n')
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return err
	}
	if ps, err := store.Pending(key); err == nil && len(ps) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "popfetch: %s: %s not listed; the next poll settles them\n", name,
			plural.Count(len(ps), "delivery an interrupted run left pending is", "deliveries an interrupted run left pending are"))
	}
	return nil
}

// uidlImport records uids, or the UIDs read from standard input.
func uidlImport(c *cli.Context, store *uidstore.Store, key uidstore.Key, name string, uids []string) error {
	if len(uids) == 0 {
		var err error
		if uids, err = readUIDs(c.App.Reader); err != nil {
			return usageError{"uidl import: " + err.Error()}
		}
	}
	uids = canonicalUIDs(uids)
	seen, err := store.Seen(key, uids)
	if err != nil {
		return err
	}
	if err := store.Record(key, uids...); err != nil {
		return err
	}
	had := 0
	for _, s := range seen {
		if s {
			had++
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "popfetch: %s: recorded %s (%d of them were recorded already)\n", name, plural.Count(len(uids), "UID", "UIDs"), had)
	return nil
}

// uidlForget forgets uids, or with --all every UID of the account.
func uidlForget(c *cli.Context, store *uidstore.Store, key uidstore.Key, name string, uids []string) error {
	var n int
	var err error
	if c.Bool("all") {
		n, err = store.ForgetAll(key)
	} else {
		n, err = store.Forget(key, canonicalUIDs(uids)...)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "popfetch: %s: forgot %s fetched again if still on the server\n", name, plural.Count(n, "UID; its message is", "UIDs; their messages are"))
	return nil
}

// readUIDs reads one UID per line, ignoring empty lines and a CR before
// the LF.
// canonicalUIDs puts UIDs given by the user (or an export) in the form
// polls record them in (pop3.CanonicalUID), unless they are in it.
func canonicalUIDs(uids []string) []string {
	out := make([]string, len(uids))
	for i, u := range uids {
		out[i] = u
		if !strings.HasPrefix(u, pop3.EscapedPrefix) {
			out[i] = pop3.CanonicalUID(u)
		}
	}
	return out
}

func readUIDs(r io.Reader) ([]string, error) {
	if r == nil {
		r = os.Stdin
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxUIDLine)
	var uids []string
	line := 0
	for sc.Scan() {
		line++
		u := strings.TrimSuffix(sc.Text(), "\r")
		if u != "" {
			uids = append(uids, u)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return uids, nil
}
