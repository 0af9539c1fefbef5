package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const gmailOAuth2 = `
[account.gmail.oauth2]
provider = "google"
client_id = "id"
`

// TestParseGmail: an [account.gmail] table is the delivery target, with
// its defaults (INBOX and UNREAD, the spam filter on, Google's endpoint,
// the gmail.modify scope), and the mistakes a first configuration makes
// are named.
func TestParseGmail(t *testing.T) {
	tests := []struct {
		name, text string
		want       *Gmail // Labels, NeverMarkSpam, APIURL and the scopes checked
		scopes     []string
		err        string
	}{
		{name: "defaults", text: "[account.gmail]" + gmailOAuth2,
			want: &Gmail{Labels: []string{"INBOX", "UNREAD"}}, scopes: []string{"https://www.googleapis.com/auth/gmail.modify"}},
		{name: "archived", text: "[account.gmail]\nlabels = []\nnever_mark_spam = true\n" + gmailOAuth2,
			want: &Gmail{Labels: []string{}, NeverMarkSpam: true}, scopes: []string{"https://www.googleapis.com/auth/gmail.modify"}},
		{name: "scopes and endpoint given", text: "[account.gmail]\nlabels = [\"ISP\"]\napi_url = \"http://127.0.0.1:8080\"" + gmailOAuth2 +
			"scopes = [\"https://www.googleapis.com/auth/gmail.insert\", \"https://www.googleapis.com/auth/gmail.labels\"]\n",
			want:   &Gmail{Labels: []string{"ISP"}, APIURL: "http://127.0.0.1:8080"},
			scopes: []string{"https://www.googleapis.com/auth/gmail.insert", "https://www.googleapis.com/auth/gmail.labels"}},
		{name: "settle_grace", text: "[account.gmail]\nsettle_grace = \"2m\"\n" + gmailOAuth2,
			want: &Gmail{Labels: []string{"INBOX", "UNREAD"}, SettleGrace: 2 * time.Minute}, scopes: []string{"https://www.googleapis.com/auth/gmail.modify"}},
		{name: "settle_grace in seconds", text: "[account.gmail]\nsettle_grace = 5\n" + gmailOAuth2,
			want: &Gmail{Labels: []string{"INBOX", "UNREAD"}, SettleGrace: 5 * time.Second}, scopes: []string{"https://www.googleapis.com/auth/gmail.modify"}},
		{name: "settle_grace too short", text: "[account.gmail]\nsettle_grace = \"10ms\"\n" + gmailOAuth2, err: "gmail: settle_grace 10ms: must be between 1s and 1h"},
		{name: "settle_grace not a duration", text: "[account.gmail]\nsettle_grace = \"soon\"\n" + gmailOAuth2, err: "settle_grace"},
		{name: "no oauth2", text: "[account.gmail]\n", err: `gmail: [account.gmail.oauth2] is missing`},
		{name: "oauth2 without client", text: "[account.gmail]\n[account.gmail.oauth2]\nprovider = \"google\"\n", err: "gmail: client_id is missing"},
		{name: "a label twice", text: "[account.gmail]\nlabels = [\"ISP\", \"isp\"]\n" + gmailOAuth2, err: `gmail: labels: label "isp" is listed twice`},
		{name: "SENT", text: "[account.gmail]\nlabels = [\"SENT\"]\n" + gmailOAuth2, err: "Gmail's own"},
		{name: "plain http", text: "[account.gmail]\napi_url = \"http://gmail.example\"\n" + gmailOAuth2, err: "must be https://"},
		{name: "unknown key", text: "[account.gmail]\nlabel = [\"x\"]\n" + gmailOAuth2, err: `labels`},
		{name: "labels of the wrong type", text: "[account.gmail]\nlabels = \"INBOX\"\n" + gmailOAuth2, err: "labels"},
		{name: "two targets", text: "maildir = \"/m\"\n[account.gmail]\n" + gmailOAuth2, err: "set one delivery target, not maildir and gmail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.toml", noTarget+tt.text)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one that says %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := cfg.Accounts[0].Gmail
			if g == nil || g.OAuth2 == nil {
				t.Fatalf("no gmail target: %+v", cfg.Accounts[0])
			}
			got := &Gmail{Labels: g.Labels, NeverMarkSpam: g.NeverMarkSpam, APIURL: g.APIURL, SettleGrace: g.SettleGrace}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(g.OAuth2.Scopes, tt.scopes) {
				t.Errorf("got %+v scopes %q, want %+v scopes %q", got, g.OAuth2.Scopes, tt.want, tt.scopes)
			}
			if g.OAuth2.Flow != FlowLoopback {
				t.Errorf("flow %q", g.OAuth2.Flow)
			}
		})
	}
}
