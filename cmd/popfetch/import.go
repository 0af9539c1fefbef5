package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config/migrate"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/pop3"
	"github.com/popfetch/popfetch/uidstore"
)

// importCommand is "popfetch import fetchmail|mpop|getmail [FILE...]".
func importCommand() *cli.Command {
	return &cli.Command{
		Name:            "import",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "convert a fetchmail, mpop or getmail6 configuration (and with --uids its UID state)",
		ArgsUsage:       "fetchmail|mpop|getmail [FILE...]",
		BashComplete:    completeByPosition([]string{"fetchmail", "mpop", "getmail"}, 0),
		Description: "Prints an equivalent popfetch configuration, with a comment on every option that did not convert.\n" +
			"FILE defaults to ~/.fetchmailrc, ~/.mpoprc (or ~/.config/mpop/config), or ~/.getmail/getmailrc\n" +
			"(or ~/.config/getmail/getmailrc); getmail takes several rc files, one account each.\n\n" +
			"With --uids, the UIDs the tool already fetched (~/.fetchids, ~/.mpop_uidls/*, getmail's oldmail-*)\n" +
			"are recorded in popfetch's UID store, so that mail it left on the server is not fetched again.\n" +
			"See docs/migrating.md.",
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "uids", Usage: "also import the tool's record of fetched messages into the UID store"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the configuration to `FILE` (mode 600; an existing file is not overwritten) instead of standard output"}),
		Action: func(c *cli.Context) error { return importAction(c) },
	}
}

func importAction(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageError{"usage: popfetch import fetchmail|mpop|getmail [FILE...]"}
	}
	tool, files := args[0], args[1:]
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		f, err := defaultRCFile(tool, home)
		if err != nil {
			return err
		}
		files = []string{f}
	}
	if tool != "getmail" && len(files) > 1 {
		return usageError{fmt.Sprintf("popfetch import %s takes one file", tool)}
	}
	var texts []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return configProblem{err}
		}
		texts = append(texts, string(data))
	}
	var res *migrate.Result
	switch tool {
	case "fetchmail":
		res, err = migrate.Fetchmail(files[0], texts[0], home)
	case "mpop":
		res, err = migrate.Mpop(files[0], texts[0], home)
	case "getmail":
		res, err = migrate.Getmail(files, texts, home)
	default:
		return usageError{fmt.Sprintf("import: unknown tool %q%s: use fetchmail, mpop or getmail", tool, didYouMean(tool, "fetchmail", "mpop", "getmail"))}
	}
	if err != nil {
		return configProblem{err}
	}
	if c.Bool("uids") {
		if err := migrate.LoadUIDs(res, os.ReadFile); err != nil {
			return configProblem{err}
		}
		if err := importUIDs(c, res); err != nil {
			return err
		}
	}
	if out := c.String("output"); out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := migrate.Write(f, res); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "popfetch: wrote %s (%s); check it with: popfetch --config %s config check\n", out, plural.Count(len(res.Accounts), "account", "accounts"), out)
	} else if err := migrate.Write(c.App.Writer, res); err != nil {
		return err
	}
	return nil
}

// configProblem is an import that could not read or understand its
// input: exit 5, like a bad popfetch config.
type configProblem struct{ err error }

func (e configProblem) Error() string { return e.err.Error() }
func (e configProblem) Unwrap() error { return e.err }

// defaultRCFile is where the tool keeps its configuration.
func defaultRCFile(tool, home string) (string, error) {
	var candidates []string
	switch tool {
	case "fetchmail":
		candidates = []string{filepath.Join(home, ".fetchmailrc")}
	case "mpop":
		candidates = []string{filepath.Join(home, ".mpoprc"), filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "mpop", "config")}
	case "getmail":
		candidates = []string{filepath.Join(home, ".getmail", "getmailrc"), filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "getmail", "getmailrc")}
	default:
		return "", usageError{fmt.Sprintf("import: unknown tool %q%s: use fetchmail, mpop or getmail", tool, didYouMean(tool, "fetchmail", "mpop", "getmail"))}
	}
	for _, f := range candidates {
		if _, err := os.Stat(f); err == nil {
			return f, nil
		}
	}
	return "", configProblem{fmt.Errorf("no %s configuration at %s; name the file", tool, strings.Join(candidates, " or "))}
}

// importUIDs records the UIDs read into the store, under each converted
// account's mailbox (server, port, user), with the time the tool
// recorded, else now.
func importUIDs(c *cli.Context, res *migrate.Result) error {
	o := readOptions(c)
	store, err := uidstore.Open(storePath(o.stateDir), o.lockTimeout)
	if err != nil {
		return err
	}
	defer store.Close()
	errOut := c.App.ErrWriter
	now := time.Now()
	for _, a := range res.Accounts {
		if a.Disabled || len(a.UIDs) == 0 {
			continue
		}
		key := uidstore.Key{Server: strings.ToLower(a.Server), Port: a.Port, User: a.User}
		byTime := map[time.Time][]string{}
		for _, u := range a.UIDs {
			t := u.Seen
			if t.IsZero() || t.After(now) {
				t = now
			}
			// The form the UIDs take when read from the server.
			byTime[t] = append(byTime[t], pop3.CanonicalUID(u.UID))
		}
		for t, uids := range byTime {
			if err := store.RecordAt(key, t, uids...); err != nil {
				return err
			}
		}
		fmt.Fprintf(errOut, "popfetch: %s: recorded %s from %s in %s\n", a.Name, plural.Count(len(a.UIDs), "UID", "UIDs"), a.UIDFile, store.Path())
	}
	return nil
}
