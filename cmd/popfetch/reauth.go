package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/popfetch/popfetch/fetch/oauth2token"
)

// tokenWatchInterval is how often the daemon looks at the token files of
// the accounts that stopped for want of a new authorization: a stat of
// each, nothing when none has stopped.
const tokenWatchInterval = 2 * time.Second

// tokenWatch is how the daemon notices that "popfetch auth" has run for an
// account that stopped because the provider refused its refresh token
// (schedule.JobStatus.NeedsAuth): it keeps what the account's token file
// was when the account stopped, and resumes the account once the file has
// changed (auth saves a new file and renames it into place).
type tokenWatch struct {
	mu    sync.Mutex
	files map[string]tokenSnap // by account
}

// tokenSnap is a token file as it was when its account stopped.
type tokenSnap struct {
	file string
	fi   os.FileInfo // nil: it did not exist
}

// note records the end of a poll of account: an error that needs a new
// authorization remembers its token file; anything else forgets the
// account.
func (w *tokenWatch) note(account string, err error) {
	var oe *oauth2token.Error
	w.mu.Lock()
	defer w.mu.Unlock()
	if !errors.As(err, &oe) || !oe.NeedsAuth() || oe.File == "" {
		delete(w.files, account)
		return
	}
	if w.files == nil {
		w.files = map[string]tokenSnap{}
	}
	fi, _ := os.Stat(oe.File)
	w.files[account] = tokenSnap{file: oe.File, fi: fi}
}

// changed returns the accounts whose token file has changed since they
// stopped.
func (w *tokenWatch) changed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, snap := range w.files {
		fi, err := os.Stat(snap.file)
		switch {
		case err != nil && snap.fi == nil:
		case err != nil:
			// Removed: nothing to poll with yet.
		case snap.fi == nil || !os.SameFile(fi, snap.fi) || !fi.ModTime().Equal(snap.fi.ModTime()) || fi.Size() != snap.fi.Size():
			out = append(out, name)
		}
	}
	return out
}

// forget drops account (resumed).
func (w *tokenWatch) forget(account string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.files, account)
}

// reset forgets every account: after a reload, which resumes them all
// (their next poll notes them again if they still need auth).
func (w *tokenWatch) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.files)
}

// watchTokens resumes the accounts whose token file "popfetch auth" has
// replaced, until ctx ends.
func (d *daemon) watchTokens(ctx context.Context) {
	t := time.NewTicker(tokenWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, name := range d.tokens.changed() {
				// A poll may still be ending (not stopped yet):
				// then try at the next tick.
				if d.sched.Resume(name) {
					d.tokens.forget(name)
					d.log.Info("the token file has changed (popfetch auth): polling again", "account", name)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}
