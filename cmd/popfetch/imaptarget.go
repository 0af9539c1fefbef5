package main

import (
	"io"
	"net"
	"strconv"
	"time"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/fetch"
	"github.com/popfetch/popfetch/fetch/oauth2token"
)

// imapTarget is an [account.imap] target: what opens its deliverer at
// each poll. Its OAuth2 token source lives as long as the target (the
// daemon's job), so that an access token serves polls until it expires.
type imapTarget struct {
	account string
	cfg     *config.IMAP
	token   *oauth2token.Source // nil without [account.imap.oauth2]
	timeout time.Duration       // the account's timeout, for each read and write
	trace   io.Writer           // the protocol trace (-vv), nil for none
	// literals remembers, for the daemon's life, a server that did not
	// honour the non-synchronizing literals it advertises.
	literals deliver.LiteralTrust
}

func newIMAPTarget(a config.Account, stateDir string) *imapTarget {
	t := &imapTarget{account: a.Name, cfg: a.IMAP, timeout: a.Timeout}
	if a.IMAP.OAuth2 != nil {
		t.token = oauth2token.New(imapOAuth2Config(a, stateDir))
	}
	return t
}

// imapOAuth2Config is the token configuration of a's IMAP target: the
// POP side's tokens and the target's are kept apart (tokenFile), and a
// refused refresh token says to run popfetch auth --target.
func imapOAuth2Config(a config.Account, stateDir string) oauth2token.Config {
	o := a.IMAP.OAuth2
	return tokenConfig(a, o, tokenFile(stateDir, a.Name, sideIMAP, o.RefreshTokenFile), reauthCommand(a.Name, true))
}

// open returns the deliverer for one poll.
func (t *imapTarget) open() (deliver.Deliverer, error) {
	c := t.cfg
	m := &deliver.IMAP{
		Addr: net.JoinHostPort(c.Server, strconv.Itoa(c.Port)), User: c.User,
		Auth: string(c.Auth), AllowInsecureAuth: c.AllowInsecureAuth, Folder: c.Folder, Flags: c.Flags,
		Timeout: t.timeout, Trace: t.trace, Literals: &t.literals,
	}
	switch c.TLS {
	case config.TLSStartTLS:
		m.TLS = deliver.IMAPStartTLS
	case config.TLSNone:
		m.TLS = deliver.IMAPNone
	default:
		m.TLS = deliver.IMAPImplicit
	}
	if c.TLS != config.TLSNone {
		tc, err := fetch.NewTLSConfig(c.Server, fetch.TLSOptions{CAFile: c.CAFile, Fingerprint: c.TLSFingerprint,
			MinVersion: c.TLSMinVersion, ServerName: c.TLSServerName})
		if err != nil {
			return nil, &fetch.Error{Account: t.account, Kind: fetch.KindConfig, Err: err}
		}
		m.TLSConfig = tc
	}
	if t.token != nil {
		m.Token = t.token.Token
	} else {
		m.Password = c.Password.Resolve
	}
	return m, nil
}

// prefixWriter puts prefix before each trace line written to w: the
// IMAP session's trace writes a line per Write.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
