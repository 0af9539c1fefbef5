package oauth2token

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popfetch/popfetch/fetch/oauth2token/oauth2test"
)

func setup(t *testing.T, cfg oauth2test.Config) (*oauth2test.Provider, Config, string) {
	cfg.ClientID = "client-1"
	p := oauth2test.NewProvider(cfg)
	t.Cleanup(p.Close)
	file := filepath.Join(t.TempDir(), "oauth2", "acct.json")
	return p, Config{TokenURL: p.URL() + "/token", DeviceAuthURL: p.URL() + "/device", ClientID: "client-1",
		Scopes: []string{"pop"}, File: file, HTTPTimeout: 5 * time.Second}, file
}

func readFile(t *testing.T, file string) fileToken {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode())
	}
	data, _ := os.ReadFile(file)
	var ft fileToken
	if err := json.Unmarshal(data, &ft); err != nil {
		t.Fatal(err)
	}
	return ft
}

func TestRefreshAndRotation(t *testing.T) {
	for _, rotate := range []bool{true, false} {
		p, cfg, file := setup(t, oauth2test.Config{Refresh: "refresh-0", Rotate: rotate})
		if err := Save(file, &oauth2.Token{RefreshToken: "refresh-0"}); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		s := New(cfg)
		tok, err := s.Token(ctx)
		if err != nil || tok != "access-1" {
			t.Fatalf("rotate %v: %q, %v", rotate, tok, err)
		}
		ft := readFile(t, file)
		want := "refresh-0"
		if rotate {
			want = "refresh-1"
		}
		if ft.RefreshToken != want || ft.AccessToken != "access-1" || time.Until(ft.Expiry) < 50*time.Minute {
			t.Fatalf("rotate %v: file %+v", rotate, ft)
		}
		// Cached in the Source, and in the file for the next run.
		if tok, _ := s.Token(ctx); tok != "access-1" {
			t.Fatalf("second Token %q", tok)
		}
		if tok, _ := New(cfg).Token(ctx); tok != "access-1" {
			t.Fatalf("next run's Token %q", tok)
		}
		if g := p.Grants(); g != "refresh_token" {
			t.Fatalf("requests %q, want one refresh", g)
		}
		// Invalidate forces a refresh with the current refresh token.
		s.Invalidate()
		if tok, err := s.Token(ctx); err != nil || tok != "access-2" {
			t.Fatalf("after Invalidate: %q, %v", tok, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(file))
		if len(entries) != 1 {
			t.Fatalf("left behind: %v", entries)
		}
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name      string
		p         oauth2test.Config
		status    int
		file      string // the token file's content; "" none
		mode      os.FileMode
		temporary bool
		want      string
	}{
		{"no file", oauth2test.Config{}, 0, "", 0, false, "run \"popfetch auth\""},
		{"revoked refresh token", oauth2test.Config{Refresh: "other"}, 0, `{"refresh_token":"refresh-0"}`, 0o600, false, "invalid_grant (AADSTS70008: The refresh token has expired); the refresh token was revoked or has expired: run \"popfetch auth\""},
		{"provider down", oauth2test.Config{Refresh: "refresh-0"}, 503, `{"refresh_token":"refresh-0"}`, 0o600, true, "503"},
		{"readable by others", oauth2test.Config{}, 0, `{"refresh_token":"refresh-0"}`, 0o644, false, "chmod 600"},
		{"garbage", oauth2test.Config{}, 0, `refresh-0 {{`, 0o600, false, "not a token file"},
		{"no refresh token", oauth2test.Config{}, 0, `{"access_token":"old"}`, 0o600, false, "no refresh token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, cfg, file := setup(t, tt.p)
			p.SetStatus(tt.status)
			if tt.file != "" {
				os.MkdirAll(filepath.Dir(file), 0o700)
				os.WriteFile(file, []byte(tt.file), tt.mode)
				os.Chmod(file, tt.mode)
			}
			_, err := New(cfg).Token(context.Background())
			var te *Error
			if !errors.As(err, &te) || te.Temporary() != tt.temporary || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (%+v), want temporary=%v mentioning %q", err, te, tt.temporary, tt.want)
			}
			if tt.name == "no file" && !errors.Is(err, ErrNoToken) {
				t.Fatalf("not ErrNoToken: %v", err)
			}
			for _, secret := range []string{"refresh-0", "leak-me", "\n"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error holds %q: %v", secret, err)
				}
			}
		})
	}
	// An unreachable provider is temporary.
	cfg := Config{TokenURL: "http://127.0.0.1:1/token", ClientID: "client-1", File: filepath.Join(t.TempDir(), "t.json"), HTTPTimeout: time.Second}
	Save(cfg.File, &oauth2.Token{RefreshToken: "r"})
	var te *Error
	if _, err := New(cfg).Token(context.Background()); !errors.As(err, &te) || !te.Temporary() {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestDeviceFlow(t *testing.T) {
	p, cfg, file := setup(t, oauth2test.Config{Pending: 1})
	s := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	da, err := s.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da.UserCode != "ABCD-EFGH" || da.VerificationURI != "https://example.test/device" {
		t.Fatalf("%+v", da)
	}
	if err := s.WaitDevice(ctx, da); err != nil {
		t.Fatal(err)
	}
	if ft := readFile(t, file); ft.RefreshToken != "refresh-1" || ft.AccessToken != "access-1" {
		t.Fatalf("file %+v", ft)
	}
	if g := p.Grants(); g != "device urn:ietf:params:oauth:grant-type:device_code urn:ietf:params:oauth:grant-type:device_code" {
		t.Fatalf("requests %q", g)
	}
	if tok, err := s.Token(ctx); err != nil || tok != "access-1" {
		t.Fatalf("Token after the device flow: %q, %v", tok, err)
	}
	if _, err := New(Config{File: file}).DeviceAuth(ctx); err == nil {
		t.Fatal("device flow without a device_auth_url")
	}
}
