package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
)

// helpCommand is "popfetch help [COMMAND]": the help of popfetch, or of
// one command, as --help prints it.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:            "help",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "show the help of popfetch, or of COMMAND",
		ArgsUsage:       "[COMMAND]",
		Flags:           hidden(globalFlags()), // accepted, as by every command (popfetch -f FILE help), and not shown
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				for _, name := range commandNames(c.App) {
					fmt.Fprintln(c.App.Writer, name)
				}
			}
		},
		Action: func(c *cli.Context) error {
			switch c.NArg() {
			case 0:
				return cli.ShowAppHelp(c)
			case 1:
			default:
				return usageError{"usage: popfetch help [COMMAND]"}
			}
			name := c.Args().First()
			if cmd := c.App.Command(name); cmd != nil {
				return cli.ShowCommandHelp(c, cmd.Name)
			}
			msg := fmt.Sprintf("no command named %q", name) + didYouMean(name, commandNames(c.App)...)
			return usageError{msg + "; the commands are " + strings.Join(commandNames(c.App), ", ")}
		},
	}
}

// commandNames lists the commands popfetch --help shows.
func commandNames(app *cli.App) []string {
	var names []string
	for _, c := range app.Commands {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return names
}

// notCommandOrAccount explains a word given without a command that is
// not an account's name either (popfetch fecth): it may be a mistyped
// command as well as a mistyped account, and the nearest of each is
// suggested. Other errors are returned as they are.
func notCommandOrAccount(app *cli.App, err error) error {
	var ue *config.UnknownAccountError
	if !errors.As(err, &ue) {
		return err
	}
	msg := fmt.Sprintf("%q is neither a command nor an account of %s", ue.Name, ue.Path)
	cmd, acct := config.Nearest(ue.Name, commandNames(app)), config.Nearest(ue.Name, ue.Accounts)
	switch {
	case cmd != "" && acct != "":
		msg += fmt.Sprintf("; did you mean the command %q or the account %q?", cmd, acct)
	case cmd != "":
		msg += fmt.Sprintf("; did you mean the command %q?", cmd)
	case acct != "":
		msg += fmt.Sprintf("; did you mean the account %q?", acct)
	default:
		msg += "; the commands are " + strings.Join(commandNames(app), ", ")
		if n := len(ue.Accounts); n > 0 && n <= 10 {
			msg += "; the accounts are " + config.QuoteList(ue.Accounts)
		}
	}
	return usageError{msg}
}

// hidden hides flags from the help, the manual page and completion.
func hidden(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Hidden = true
		case *cli.BoolFlag:
			f.Hidden = true
		case *cli.DurationFlag:
			f.Hidden = true
		}
	}
	return flags
}

// didYouMean is " (did you mean "X"?)" for the candidate nearest to what
// was typed, or "" if none is near.
func didYouMean(typed string, candidates ...string) string {
	if s := config.Nearest(typed, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}
