package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/fetch/oauth2token"
	"github.com/popfetch/popfetch/fetch/termsafe"
)

// Bounds of "popfetch auth".
const (
	// deviceWait bounds the device flow (the provider's code expires
	// sooner, typically in 15 minutes).
	deviceWait = 30 * time.Minute
	// loopbackWait bounds the wait for the browser to come back.
	loopbackWait = 15 * time.Minute
	// maxPasteTries is how many wrong addresses --no-browser takes before
	// it gives up.
	maxPasteTries = 5
)

// authCommand is "popfetch auth ACCOUNT": the first OAuth2 refresh token,
// by the loopback flow (a browser, RFC 8252) or the device flow (RFC 8628).
func authCommand(p *proc) *cli.Command {
	return &cli.Command{
		Name:            "auth",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "authorize popfetch for an account with an [account.oauth2] table: sign in with the browser (or enter the code shown), and popfetch saves the refresh token",
		ArgsUsage:       "ACCOUNT",
		BashComplete:    completeOneAccount,
		Description: "The POP side's token by default; --target gets the delivery target's (an IMAP server's or Gmail's).\n" +
			"flow = \"loopback\" (Google's default) opens the browser and waits for it to come back to\n" +
			"popfetch on 127.0.0.1; flow = \"device\" (Microsoft's default) shows a URL and a code to enter on any device.",
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "target", Usage: "authorize the account's delivery target (its [account.imap.oauth2] or [account.gmail.oauth2]) instead of its POP server"},
			&cli.BoolFlag{Name: "no-browser", Usage: "start no browser: open the URL shown on any machine, then paste the address the browser was sent back to (http://127.0.0.1:...)"}),
		Action: func(c *cli.Context) error { return authAction(c, p) },
	}
}

// targetOAuth2 returns the [account.TARGET.oauth2] table of a's delivery
// target and its token file; ok is false if the target has none.
func targetOAuth2(a config.Account, stateDir string) (o *config.OAuth2, file string, ok bool) {
	if a.IMAP != nil && a.IMAP.OAuth2 != nil {
		o := a.IMAP.OAuth2
		return o, tokenFile(stateDir, a.Name, sideIMAP, o.RefreshTokenFile), true
	}
	if a.Gmail != nil && a.Gmail.OAuth2 != nil {
		o := a.Gmail.OAuth2
		return o, tokenFile(stateDir, a.Name, sideGmail, o.RefreshTokenFile), true
	}
	return nil, "", false
}

// The sides of an account that may have OAuth2 tokens of their own.
const (
	sidePOP   = ""      // the POP server: [account.oauth2]
	sideIMAP  = "imap"  // an imap target: [account.imap.oauth2]
	sideGmail = "gmail" // a gmail target: [account.gmail.oauth2]
)

// tokenFile is the token file of one side of an account: configured if
// the table names one (refresh_token_file), else STATE/oauth2/NAME.json
// for the POP side and STATE/oauth2/NAME.SIDE.json for a target's, so that
// the two never share a file. This is the one place that names them.
func tokenFile(stateDir, account, side, configured string) string {
	if configured != "" {
		return configured
	}
	name := account + ".json"
	if side != sidePOP {
		name = account + "." + side + ".json"
	}
	return filepath.Join(stateDir, "oauth2", name)
}

// tokenConfig is the token source configuration of one side of account a:
// o is its oauth2 table, file its token file, reauth the command that
// gets a new token.
func tokenConfig(a config.Account, o *config.OAuth2, file, reauth string) oauth2token.Config {
	c := oauth2token.Config{TokenURL: o.TokenURL, DeviceAuthURL: o.DeviceAuthURL, AuthURL: o.AuthURL,
		AuthParams: o.AuthParams, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
		File: file, Reauth: reauth}
	if isGoogle(o) {
		c.RefusedHint = googleTestingHint
	}
	return c
}

// googleTestingHint is why a Google refresh token may stop working every
// week.
const googleTestingHint = "if this recurs weekly: Google ends the refresh tokens of a Cloud project whose OAuth consent screen is in \"Testing\" after 7 days; publish the app (\"In production\", docs/auth.md#gmail) to keep them"

// isGoogle reports whether o gets its tokens from Google.
func isGoogle(o *config.OAuth2) bool {
	return o.Provider == "google" || strings.HasPrefix(o.TokenURL, "https://oauth2.googleapis.com/")
}

// reauthCommand is the command that gets a new token for one side of an
// account.
func reauthCommand(account string, target bool) string {
	if target {
		return "popfetch auth --target " + account
	}
	return "popfetch auth " + account
}

func authAction(c *cli.Context, p *proc) error {
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
	target := c.Bool("target")
	var (
		table *config.OAuth2
		file  string
		what  string // what the token lets popfetch do, for people
	)
	if target {
		lookup := targetOAuth2
		if p != nil && p.targetOAuth2 != nil {
			lookup = p.targetOAuth2
		}
		var ok bool
		if table, file, ok = lookup(a, o.stateDir); !ok {
			return usageError{fmt.Sprintf("the delivery target of account %s has no oauth2 table ([account.imap.oauth2] or [account.gmail.oauth2]); see docs/auth.md", a.Name)}
		}
		what = "deliver the mail of " + a.Name
	} else {
		if a.OAuth2 == nil {
			return usageError{fmt.Sprintf("account %s has no [account.oauth2] table; see docs/auth.md", a.Name)}
		}
		table, file = a.OAuth2, tokenFile(o.stateDir, a.Name, sidePOP, a.OAuth2.RefreshTokenFile)
		what = fmt.Sprintf("read the mail of %s (%s)", a.Name, termsafe.String(a.User))
	}
	ocfg := tokenConfig(a, table, file, reauthCommand(a.Name, target))
	if !target {
		ocfg.LoginHint = a.User
	}
	src := oauth2token.New(ocfg)
	w := c.App.Writer
	if table.Flow == config.FlowLoopback {
		err = loopbackAuth(c, src, what, c.Bool("no-browser"))
	} else {
		err = deviceAuth(c, src, what)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Authorized. The refresh token is saved in %s; popfetch refreshes access tokens from now on.\n", file)
	if _, running := daemonRunning(o.stateDir); running {
		// It watches the token files of the accounts it stopped.
		fmt.Fprintf(w, "The running daemon polls %s again within seconds, if it had stopped it.\n", a.Name)
	}
	return nil
}

// deviceAuth gets the first refresh token by the device authorization
// grant.
func deviceAuth(c *cli.Context, src *oauth2token.Source, what string) error {
	ctx, cancel := context.WithTimeout(c.Context, deviceWait)
	defer cancel()
	da, err := src.DeviceAuth(ctx)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "To let popfetch %s, open\n\n    %s\n\nand enter the code\n\n    %s\n\n", what, termsafe.String(da.VerificationURI), termsafe.String(da.UserCode))
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(w, "(or open %s)\n", termsafe.String(da.VerificationURIComplete))
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(w, "The code expires at %s. Waiting...\n", da.Expiry.Local().Format("15:04"))
	} else {
		fmt.Fprintln(w, "Waiting...")
	}
	return src.WaitDevice(ctx, da)
}

// loopbackAuth gets the first refresh token by the authorization code
// grant with PKCE: the browser is sent to the provider, and back to a
// listener on 127.0.0.1. With noBrowser, or when no browser can be
// started, the address the browser was sent back to may be pasted on
// standard input (for a browser on another machine, which cannot reach
// this one's 127.0.0.1); the listener takes the redirect too, if it gets
// there (an SSH port forward).
func loopbackAuth(c *cli.Context, src *oauth2token.Source, what string, noBrowser bool) error {
	ln, redirect, err := oauth2token.Listen()
	if err != nil {
		return err
	}
	az, err := src.NewAuthorization(redirect)
	if err != nil {
		ln.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, loopbackWait)
	defer cancel()
	w := c.App.Writer
	fmt.Fprintf(w, "To let popfetch %s, open this address in a browser and sign in:\n\n    %s\n\n", what, az.URL)
	paste := noBrowser
	if !noBrowser {
		if err := openBrowser(az.URL); err != nil {
			// Over SSH, say: the browser is elsewhere.
			fmt.Fprintf(w, "(No browser was started here: %s.)\n", termsafe.String(err.Error()))
			paste = true
		}
	}
	until := time.Now().Add(loopbackWait).Local().Format("15:04")
	results := make(chan error, 2)
	go func() {
		results <- az.Serve(ctx, ln, oauth2token.Page{Title: "popfetch is authorized",
			Text: "popfetch has its token and can " + what + ". You can close this tab."})
	}()
	if paste {
		fmt.Fprintf(w, "After you sign in, the browser is sent to %s. If it cannot open that address (it runs on another machine), copy the whole address from its address bar and paste it here (until %s):\n", redirect, until)
		go func() { results <- pasted(ctx, c.App.Reader, az, c.App.ErrWriter) }()
	} else {
		fmt.Fprintf(w, "Waiting for the browser to come back to %s (until %s)...\n", redirect, until)
	}
	for {
		err := <-results
		if errors.Is(err, errNoPaste) {
			continue // standard input ended: the listener may still get it
		}
		return err
	}
}

// errNoPaste: standard input ended before an address was pasted.
var errNoPaste = errors.New("no address pasted")

// pasted reads redirected addresses from r, a line each, and finishes the
// authorization with the first that is this authorization's. A line that
// is not says why on ew and asks again, up to maxPasteTries times.
func pasted(ctx context.Context, r io.Reader, az *oauth2token.Authorization, ew io.Writer) error {
	br := bufio.NewReaderSize(r, 4096)
	for tries := 0; tries < maxPasteTries; {
		line, err := readLine(br, 64<<10)
		if err != nil {
			return errNoPaste
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		tries++
		err = az.Finish(ctx, line)
		var re *oauth2token.RedirectError
		if errors.As(err, &re) && tries < maxPasteTries {
			fmt.Fprintf(ew, "popfetch: %s; paste the address again:\n", termsafe.String(re.Error()))
			continue
		}
		return err
	}
	return &oauth2token.Error{Err: fmt.Errorf("%d addresses pasted were not the redirect: giving up", maxPasteTries)}
}

// readLine reads one line of at most limit octets; a longer one is
// returned cut, for Finish to refuse.
func readLine(br *bufio.Reader, limit int) (string, error) {
	var b strings.Builder
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		if b.Len() < limit {
			b.Write(chunk[:min(len(chunk), limit-b.Len())])
		}
		if !isPrefix {
			return b.String(), nil
		}
	}
}

// openBrowser starts a browser on url, without a shell and without waiting
// for it: $BROWSER if set (a program, given the URL as its argument), else
// xdg-open in a graphical session, open(1) on macOS. It fails when there
// is no way to start one.
func openBrowser(url string) error {
	var argv []string
	switch b := os.Getenv("BROWSER"); {
	case b != "":
		// $BROWSER may list several, colon-separated: the first.
		first, _, _ := strings.Cut(b, ":")
		argv = []string{first, url}
	case runtime.GOOS == "darwin":
		argv = []string{"open", url}
	case os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "":
		argv = []string{"xdg-open", url}
	default:
		return errors.New("no graphical session ($DISPLAY, $WAYLAND_DISPLAY) and no $BROWSER")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap it; a browser may run long after popfetch ends
	return nil
}
