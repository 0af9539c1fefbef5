package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/plural"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// serverinfoCommand is "popfetch serverinfo ACCOUNT": what the server
// says about itself (mpop --serverinfo).
func serverinfoCommand(p *proc) *cli.Command {
	return &cli.Command{
		Name:            "serverinfo",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "show what the account's server says about itself: greeting, capabilities, TLS and its certificates",
		ArgsUsage:       "[ACCOUNT]",
		BashComplete:    completeOneAccount,
		Description: "serverinfo connects without logging in and shows the greeting, CAPA before and after TLS,\n" +
			"the TLS version and cipher suite, the certificate chain (subjects, names, dates, SHA-256\n" +
			"fingerprints), the login mechanisms, PIPELINING, and EXPIRE and LOGIN-DELAY explained.\n" +
			"A certificate that fails the checks (a self-signed server) is shown all the same, with why it\n" +
			"failed and a tls_fingerprint line to paste once the fingerprint is confirmed another way;\n" +
			"nothing secret is sent to such a server. With --login it also logs in, as a poll does, for the\n" +
			"capabilities the server gives the user and the number of messages; nothing is fetched or deleted.\n" +
			"ACCOUNT may be left out when the configuration has one account.\n" +
			"It exits 0, or as a poll would fail (2 for a certificate that failed the checks).",
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "login", Usage: "also log in: the capabilities after login and the message count"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON for scripts (see docs/serverinfo.md)"}),
		Action: func(c *cli.Context) error { return serverinfoAction(c, p) },
	}
}

func serverinfoAction(c *cli.Context, p *proc) error {
	if c.NArg() > 1 {
		return usageError{"usage: popfetch serverinfo [--login] [--json] [ACCOUNT]"}
	}
	o := readOptions(c)
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	accounts, err := cfg.Select(c.Args().Slice())
	if err != nil {
		return err
	}
	if len(accounts) != 1 {
		// No name given, and the file has several accounts.
		return usageError{"serverinfo needs an account's name; the accounts are " + accountNames(accounts)}
	}
	a := accounts[0]
	acct, err := fetchAccount(a, o)
	if err != nil {
		return err
	}
	acct.Password = withPrompt(a, acct.Password, ttyPath, p.stop)
	opts := fetch.ServerInfoOptions{Login: c.Bool("login")}
	if o.verbosity >= 2 {
		opts.Trace = termsafe.Writer(c.App.ErrWriter)
	}
	info, err := fetch.GetServerInfo(c.Context, acct, opts)
	if info == nil {
		return err
	}
	if c.Bool("json") {
		out := serverInfoJSON{ServerInfo: info}
		if err != nil {
			out.Error = err.Error()
		}
		b, jerr := json.MarshalIndent(out, "", "  ")
		if jerr != nil {
			return jerr
		}
		fmt.Fprintf(c.App.Writer, "%s\n", termsafe.JSON(b))
		return err
	}
	printServerInfo(c.App.Writer, info, a, err, time.Now())
	return err
}

// serverInfoJSON is serverinfo --json's output: the fetch.ServerInfo and
// the error that ended it, if any.
type serverInfoJSON struct {
	*fetch.ServerInfo
	Error string `json:"error,omitempty"`
}

// printServerInfo prints info for people. Every string from the server
// passes termsafe.
func printServerInfo(w io.Writer, info *fetch.ServerInfo, a config.Account, err error, now time.Time) {
	s := termsafe.String
	fmt.Fprintf(w, "POP3 server %s, port %d (%s), tls = %q\n", info.Server, info.Port, info.Address, info.TLSMode)
	fmt.Fprintf(w, "Greeting: +OK %s\n", s(info.Greeting))
	if info.APOP {
		fmt.Fprintf(w, "  it holds a timestamp: the server offers APOP\n")
	}
	if info.TLSMode == fetch.TLSStartTLS {
		fmt.Fprintf(w, "\nCapabilities before TLS (on the plaintext connection, which anyone on the path can change):\n")
		printCapaLines(w, info.CapaBeforeTLS)
	}
	if t := info.TLS; t != nil {
		printTLS(w, t, a, now)
	}
	if info.Capa != nil || info.TLSMode != fetch.TLSStartTLS || info.TLS != nil {
		title := "Capabilities"
		if info.TLS != nil {
			title += " (over TLS)"
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		if info.Capa == nil {
			fmt.Fprintf(w, "  none: the server does not know CAPA (an RFC 1939 server), or did not answer it\n")
		}
		printCapaLines(w, info.Capa)
		printCapaNotes(w, info.Capa, info, a)
	}
	if info.LoggedIn {
		fmt.Fprintf(w, "\nLogged in with %s. Capabilities after login:\n", info.Auth)
		printCapaLines(w, info.CapaAfterLogin)
		printPolicies(w, info.CapaAfterLogin, a, true)
		fmt.Fprintf(w, "\nMessages: %d (%d octets)\n", info.Messages, info.Octets)
	} else if err == nil {
		fmt.Fprintf(w, "\nMessages: not known without logging in (popfetch serverinfo --login %s)\n", a.Name)
	}
	if err != nil && !errors.Is(err, fetch.ErrUnverified) {
		// (An unverified certificate is explained above.)
		fmt.Fprintf(w, "\nStopped: %s\n", s(err.Error()))
	}
}

func printCapaLines(w io.Writer, caps []fetch.Capability) {
	for _, c := range caps {
		fmt.Fprintf(w, "  %s\n", termsafe.String(strings.TrimSpace(c.Name+" "+strings.Join(c.Args, " "))))
	}
}

// printTLS prints the TLS session and the certificate chain, and, for a
// certificate that failed the checks, the tls_fingerprint line.
func printTLS(w io.Writer, t *fetch.TLSInfo, a config.Account, now time.Time) {
	s := termsafe.String
	fmt.Fprintf(w, "\nTLS: %s, %s\n", t.Version, t.CipherSuite)
	switch {
	case t.Verified && a.TLSFingerprint != "":
		fmt.Fprintf(w, "Certificate: verified: it has the SHA-256 fingerprint tls_fingerprint pins\n")
	case t.Verified:
		from := "a CA the system trusts"
		if a.CAFile != "" {
			from = "a CA in " + a.CAFile
		}
		fmt.Fprintf(w, "Certificate: verified for %q, from %s\n", t.ServerName, from)
	default:
		fmt.Fprintf(w, "Certificate: NOT VERIFIED: %s\n", s(t.VerifyError))
	}
	fmt.Fprintf(w, "Certificate chain, as the server sent it (its own first):\n")
	for i, c := range t.Chain {
		fmt.Fprintf(w, "  %d. subject  %s\n", i+1, s(c.Subject))
		fmt.Fprintf(w, "     issuer   %s\n", s(c.Issuer))
		if len(c.Names) > 0 {
			fmt.Fprintf(w, "     names    %s\n", s(strings.Join(c.Names, ", ")))
		}
		fmt.Fprintf(w, "     valid    %s to %s%s\n", c.NotBefore.Format(time.DateTime+" MST"), c.NotAfter.Format(time.DateTime+" MST"), validity(c, now))
		fmt.Fprintf(w, "     SHA-256  %s\n", c.SHA256)
	}
	if !t.Verified && len(t.Chain) > 0 {
		fmt.Fprintf(w, "\nTo trust this certificate and no other, first compare its fingerprint above with one you\n"+
			"get another way than this connection (from the server's administrator, or on the server with\n"+
			"openssl x509 -noout -fingerprint -sha256 -in CERT): anyone on the path could have sent it.\n"+
			"If they are equal, add this line to the account %s:\n\n  tls_fingerprint = %q\n", a.Name, t.Chain[0].SHA256)
	}
}

// validity says whether a certificate is valid now.
func validity(c fetch.CertInfo, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return " (NOT YET VALID)"
	case now.After(c.NotAfter):
		return " (EXPIRED)"
	case c.NotAfter.Sub(now) < 24*time.Hour:
		return " (expires within a day)"
	case c.NotAfter.Sub(now) < 30*24*time.Hour:
		return " (expires in " + plural.Count(int(c.NotAfter.Sub(now).Hours()/24), "day", "days") + ")"
	}
	return ""
}

// printCapaNotes says what the capabilities mean for the account.
func printCapaNotes(w io.Writer, caps []fetch.Capability, info *fetch.ServerInfo, a config.Account) {
	has := map[string][]string{}
	for _, c := range caps {
		has[c.Name] = c.Args
	}
	if caps == nil {
		return
	}
	fmt.Fprintf(w, "What they mean:\n")
	var mechs []string
	if _, ok := has["USER"]; ok {
		mechs = append(mechs, "USER/PASS")
	}
	if info.APOP {
		mechs = append(mechs, "APOP")
	}
	if m, ok := has["SASL"]; ok {
		mechs = append(mechs, m...)
	}
	if len(mechs) > 0 {
		fmt.Fprintf(w, "  login:      %s (auth = %q picks the strongest the account can use)\n", termsafe.String(strings.Join(mechs, ", ")), a.Auth)
	} else {
		fmt.Fprintf(w, "  login:      no mechanism advertised (USER/PASS is tried)\n")
	}
	if _, ok := has["PIPELINING"]; ok {
		fmt.Fprintf(w, "  PIPELINING: commands can be sent ahead of their replies; popfetch does (pipelining = %q)\n", a.Pipelining)
	} else {
		fmt.Fprintf(w, "  PIPELINING: not offered: one command at a time (a round trip per message)\n")
	}
	if _, ok := has["UIDL"]; ok {
		fmt.Fprintf(w, "  UIDL:       messages have unique IDs: keep = true and fetching only new mail work\n")
	} else {
		fmt.Fprintf(w, "  UIDL:       not offered: keep = true cannot tell new mail from old\n")
	}
	if _, ok := has["TOP"]; ok {
		fmt.Fprintf(w, "  TOP:        headers can be read alone (popfetch list --headers)\n")
	}
	if info.TLSMode == fetch.TLSNone {
		if _, ok := has["STLS"]; ok {
			fmt.Fprintf(w, "  STLS:       the server offers TLS: set tls = \"starttls\"\n")
		}
	}
	if impl, ok := has["IMPLEMENTATION"]; ok {
		fmt.Fprintf(w, "  software:   %s\n", termsafe.String(strings.Join(impl, " ")))
	}
	printPolicies(w, caps, a, false)
}

// printPolicies explains EXPIRE and LOGIN-DELAY (RFC 2449 sections 6.5
// and 6.7).
func printPolicies(w io.Writer, caps []fetch.Capability, a config.Account, afterLogin bool) {
	for _, c := range caps {
		p, ok := fetch.ParsePolicy(c.Args)
		if !ok && (c.Name == "EXPIRE" || c.Name == "LOGIN-DELAY") {
			fmt.Fprintf(w, "  %-11s without a value\n", c.Name+":")
			continue
		}
		if p.PerUser && !afterLogin && (c.Name == "EXPIRE" || c.Name == "LOGIN-DELAY") {
			fmt.Fprintf(w, "  %-11s %s USER: it varies per user; this user's value is in the capabilities after login (--login). For %s:\n",
				c.Name+":", termsafe.String(p.Value), termsafe.String(p.Value))
		}
		switch c.Name {
		case "EXPIRE":
			switch {
			case strings.EqualFold(p.Value, "NEVER"):
				fmt.Fprintf(w, "  EXPIRE:     NEVER: the server never deletes mail by itself\n")
			case p.Number == 0:
				fmt.Fprintf(w, "  EXPIRE:     0: the server deletes every message once it has been retrieved: keep = true cannot leave mail there\n")
			case p.Number > 0:
				fmt.Fprintf(w, "  EXPIRE:     %d: the server may delete a message %d days after it was first retrieved\n", p.Number, p.Number)
			default:
				fmt.Fprintf(w, "  EXPIRE:     %s: not a number of days\n", termsafe.String(p.Value))
			}
		case "LOGIN-DELAY":
			if p.Number < 0 {
				fmt.Fprintf(w, "  LOGIN-DELAY: %s: not a number of seconds\n", termsafe.String(p.Value))
				continue
			}
			d := time.Duration(min(p.Number, 1<<20)) * time.Second
			fmt.Fprintf(w, "  LOGIN-DELAY: %d: the server refuses a login sooner than %v after the last", p.Number, d)
			if a.Interval > 0 && a.Interval < d {
				fmt.Fprintf(w, "; the account's interval (%v) is shorter: the daemon waits the longer", a.Interval)
			}
			fmt.Fprintln(w)
		}
	}
}
