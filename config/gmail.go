package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/popfetch/popfetch/deliver/gmail"
)

// Gmail is an [account.gmail] table: a delivery target that imports each
// message into a Gmail mailbox with the Gmail API (see docs/gmail.md).
type Gmail struct {
	Labels        []string // label names; ["INBOX", "UNREAD"] unless set
	NeverMarkSpam bool
	OAuth2        *OAuth2 // [account.gmail.oauth2], required; RefreshTokenFile "" means STATE/oauth2/ACCOUNT.gmail.json
	// APIURL is the Gmail API's endpoint; "" means Google's. For tests.
	APIURL string
	// SettleGrace is how old a pending record must be before a search
	// that does not find its message counts (gmail.Target.SettleGrace);
	// 0 means the default.
	SettleGrace time.Duration
}

// gmailScopes are the scopes the google preset asks for on the Gmail side:
// gmail.modify covers users.messages.import, users.labels.list and
// create, and the rfc822msgid: search that settles pending records.
var gmailScopes = map[string][]string{
	"google": {"https://www.googleapis.com/auth/gmail.modify"},
}

// rawGmail is an [account.gmail] table as written.
type rawGmail struct {
	Labels        *[]string  `toml:"labels"`
	NeverMarkSpam *bool      `toml:"never_mark_spam"`
	OAuth2        *rawOAuth2 `toml:"oauth2"`
	APIURL        *string    `toml:"api_url"`
	SettleGrace   *Duration  `toml:"settle_grace"`
}

// gmailTarget builds the [account.gmail] table, its problems named
// "gmail: ...".
func (b *builder) gmailTarget(r rawGmail) *Gmail {
	g := &Gmail{Labels: gmail.DefaultLabels(), NeverMarkSpam: r.NeverMarkSpam != nil && *r.NeverMarkSpam}
	var problems []string
	if r.Labels != nil {
		g.Labels = append([]string{}, *r.Labels...) // labels = [] is none, not the default
		if err := gmail.CheckLabels(g.Labels); err != nil {
			problems = append(problems, fmt.Sprintf("labels: %v", err))
		}
	}
	if r.APIURL != nil {
		g.APIURL = *r.APIURL
		if !strings.HasPrefix(g.APIURL, "https://") && !isLoopbackURL(g.APIURL) {
			problems = append(problems, fmt.Sprintf("api_url %q: must be https:// (http:// only for localhost)", g.APIURL))
		}
	}
	if r.SettleGrace != nil {
		g.SettleGrace = time.Duration(*r.SettleGrace)
		if g.SettleGrace < time.Second || g.SettleGrace > time.Hour {
			problems = append(problems, fmt.Sprintf("settle_grace %v: must be between 1s and 1h", g.SettleGrace))
		}
	}
	if r.OAuth2 == nil {
		problems = append(problems, "[account.gmail.oauth2] is missing: the Gmail API needs an OAuth 2.0 client (provider = \"google\", client_id; see docs/gmail.md)")
	} else {
		o, ps := buildOAuth2(*r.OAuth2)
		problems = append(problems, ps...)
		if o != nil && r.OAuth2.Scopes == nil {
			if s, ok := gmailScopes[o.Provider]; ok {
				o.Scopes = s
			}
		}
		g.OAuth2 = o
	}
	for _, p := range problems {
		b.problems = append(b.problems, "gmail: "+p)
	}
	return g
}

// gmail writes the [account.gmail] table, secrets masked.
func (p *dumper) gmail(name string, g *Gmail) {
	p.line("[account.gmail]")
	p.strs("labels", g.Labels)
	p.bool("never_mark_spam", g.NeverMarkSpam)
	p.optional("api_url", g.APIURL, "Google's, https://gmail.googleapis.com")
	if g.SettleGrace != 0 {
		p.duration("settle_grace", g.SettleGrace)
	} else {
		p.comment("settle_grace = %q (the default)", gmail.DefaultSettleGrace.String())
	}
	if g.OAuth2 != nil {
		p.oauth2("[account.gmail.oauth2]", g.OAuth2, fmt.Sprintf("STATE/oauth2/%s.gmail.json", name), gmailScopes)
	}
}
