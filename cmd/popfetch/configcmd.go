package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
)

// configCommand is "popfetch config check [ACCOUNT...]": validate the
// configuration and print it as popfetch will use it, secrets masked
// (fetchmail's --configdump).
func configCommand() *cli.Command {
	return &cli.Command{
		Name:            "config",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "check the configuration and print it with defaults filled in and secrets masked",
		ArgsUsage:       "check [ACCOUNT...]",
		BashComplete:    completeByPosition([]string{"check"}, -1),
		Description: "config check reads the configuration as a run would, checks every account (TLS files\n" +
			"included), and prints it as TOML: every key with the value popfetch uses, keys that are\n" +
			"not set as comments saying what applies, passwords, client secrets and password_command's\n" +
			"arguments as ********.\n" +
			"It exits 0 if the configuration is good, 5 if not, 6 if its permissions are wrong.",
		Flags:  globalFlags(),
		Action: func(c *cli.Context) error { return configAction(c) },
	}
}

func configAction(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageError{"usage: popfetch config check [ACCOUNT...]"}
	}
	if args[0] != "check" {
		return usageError{fmt.Sprintf("popfetch config: unknown operation %q%s: usage: popfetch config check [ACCOUNT...]", args[0], didYouMean(args[0], "check"))}
	}
	o := readOptions(c)
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	accounts, err := cfg.Select(args[1:])
	if err != nil {
		return err
	}
	for _, a := range accounts {
		// What a run builds from the account, TLS files included.
		if _, err := fetchAccount(a, o); err != nil {
			return err
		}
	}
	selected := *cfg
	selected.Accounts = accounts
	return config.Dump(c.App.Writer, &selected)
}
