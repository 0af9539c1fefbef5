package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// listCommand is "popfetch list [ACCOUNT]": the messages on the server.
func listCommand(p *proc) *cli.Command {
	return &cli.Command{
		Name:            "list",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "show the messages on the server: number, UID, size, new or delivered before (when)",
		ArgsUsage:       "[ACCOUNT]",
		BashComplete:    completeOneAccount,
		Description: "list logs in, lists the mailbox and logs out; it fetches, deletes and records nothing.\n" +
			"ACCOUNT may be left out when the configuration has one account.\n" +
			"With --headers it shows each message's Subject and From too, read with TOP n 0.",
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "headers", Aliases: []string{"H"}, Usage: "show Subject and From (one TOP command per message)"}),
		Action: func(c *cli.Context) error { return listAction(c, p) },
	}
}

func listAction(c *cli.Context, p *proc) error {
	if c.NArg() > 1 {
		return usageError{"usage: popfetch list [--headers] [ACCOUNT]"}
	}
	e, err := prepare(c)
	if err != nil {
		return err
	}
	defer e.close()
	if len(e.accounts) != 1 {
		// No name given, and the file has several accounts.
		return usageError{"list needs an account's name; the accounts are " + accountNames(e.accounts)}
	}
	e.poll.Stop = p.stop
	acct, err := oneShotAccount(e.accounts[0], e)
	if err != nil {
		return err
	}
	headers := c.Bool("headers")
	msgs, err := fetch.List(c.Context, acct, e.store, headers, e.poll)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	title := "NUMBER\tUID\tSIZE\tSTATUS"
	if headers {
		title += "\tFROM\tSUBJECT"
	}
	fmt.Fprintln(tw, title)
	newCount := 0
	for _, m := range msgs {
		status := "new"
		if m.Seen {
			status = "delivered " + m.First.Local().Format(time.DateOnly)
		} else {
			newCount++
		}
		uid := m.UID
		if uid == "" {
			uid = "-"
		}
		line := fmt.Sprintf("%d\t%s\t%s\t%s", m.Number, termsafe.String(uid), humanBytes(m.Size), status)
		if headers {
			line += fmt.Sprintf("\t%s\t%s", termsafe.String(m.From), termsafe.String(m.Subject))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(c.App.ErrWriter, "%s, %d new\n", plural.Count(len(msgs), "message", "messages"), newCount)
	if newCount > 0 {
		return nil
	}
	return exitStatus(exitNoMail)
}

// accountNames lists the names of accounts, quoted, for a message.
func accountNames(accounts []config.Account) string {
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.Name
	}
	return config.QuoteList(names)
}
