package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/fetch/oauth2token"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// authCommand is "popfetch auth ACCOUNT": the first OAuth2 refresh token,
// by the device authorization grant (RFC 8628).
func authCommand() *cli.Command {
	return &cli.Command{
		Name:            "auth",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "authorize popfetch for an account with an [account.oauth2] table: open the URL shown, enter the code, and popfetch saves the refresh token",
		ArgsUsage:       "ACCOUNT",
		BashComplete:    completeOneAccount,
		Flags:           globalFlags(),
		Action:          func(c *cli.Context) error { return authAction(c) },
	}
}

func authAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{"popfetch auth takes one account name (see popfetch auth --help)"}
	}
	o := readOptions(c)
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	accts, err := cfg.Select(c.Args().Slice())
	if err != nil {
		return usageError{err.Error()}
	}
	a := accts[0]
	if a.OAuth2 == nil {
		return usageError{fmt.Sprintf("account %s has no [account.oauth2] table; see docs/auth.md", a.Name)}
	}
	ocfg := oauth2Config(a, o.stateDir)
	src := oauth2token.New(ocfg)
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Minute)
	defer cancel()
	da, err := src.DeviceAuth(ctx)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "To let popfetch read the mail of %s (%s), open\n\n    %s\n\nand enter the code\n\n    %s\n\n", a.Name, a.User, termsafe.String(da.VerificationURI), termsafe.String(da.UserCode))
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(w, "(or open %s)\n", termsafe.String(da.VerificationURIComplete))
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(w, "The code expires at %s. Waiting...\n", da.Expiry.Local().Format("15:04"))
	} else {
		fmt.Fprintln(w, "Waiting...")
	}
	if err := src.WaitDevice(ctx, da); err != nil {
		return err
	}
	fmt.Fprintf(w, "Authorized. The refresh token is saved in %s; popfetch refreshes access tokens from now on.\n", ocfg.File)
	return nil
}
