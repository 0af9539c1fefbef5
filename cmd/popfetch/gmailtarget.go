package main

import (
	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/deliver/gmail"
	"github.com/popfetch/popfetch/fetch/oauth2token"
)

// gmailTarget is an [account.gmail] target: what opens its deliverer at
// each poll. Its token source lives as long as the target (the daemon's
// job), so that an access token serves polls until it expires; so does
// its HTTP client, so that connections to Google are kept between polls.
type gmailTarget struct {
	account string
	cfg     *config.Gmail
	client  *gmail.Client
	file    string // the token file, which names the mailbox in pending records
}

func newGmailTarget(a config.Account, stateDir string) *gmailTarget {
	o := a.Gmail.OAuth2
	file := tokenFile(stateDir, a.Name, sideGmail, o.RefreshTokenFile)
	src := oauth2token.New(tokenConfig(a, o, file, reauthCommand(a.Name, true)))
	return &gmailTarget{account: a.Name, cfg: a.Gmail, file: file, client: &gmail.Client{
		BaseURL: a.Gmail.APIURL, Token: src.Token, TokenRefused: src.Invalidate, Timeout: a.Timeout,
	}}
}

// open returns the deliverer for one poll: its labels are looked up anew.
func (t *gmailTarget) open() (deliver.Deliverer, error) {
	return &gmail.Target{Client: t.client, Name: "gmail (account " + t.account + ")", Labels: t.cfg.Labels,
		NeverMarkSpam: t.cfg.NeverMarkSpam, Identity: "gmail " + t.file, SettleGrace: t.cfg.SettleGrace}, nil
}
