package fetch

import (
	"sync"

	"github.com/popfetch/popfetch/fetch/saslmech"
)

// Memo is what the polls of one account learn about its server and pass
// on to the next poll: the login method auth = "auto" settled on after
// the server refused a stronger one, and the warnings already given. The
// daemon keeps one per account so that it neither repeats a refused login
// nor the same warning every poll; a nil *Memo (a one-shot run) starts
// afresh.
type Memo struct {
	mu       sync.Mutex
	auth     AuthMode
	warned   map[string]bool
	tooLarge map[string]int64 // UID -> octets, of messages found larger than size_limit
	capa     bool             // the server has answered CAPA
	// scram is the last SCRAM login's salted password: the next login
	// with the same password and the server's same salt skips PBKDF2.
	scram saslmech.SaltedPasswords
}

// saltedPasswords returns the SCRAM cache; nil (no cache) without a Memo.
func (m *Memo) saltedPasswords() *saslmech.SaltedPasswords {
	if m == nil {
		return nil
	}
	return &m.scram
}

// setCapaWorks notes that the server answered CAPA.
func (m *Memo) setCapaWorks() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capa = true
}

// capaWorks reports whether the server has answered CAPA before.
func (m *Memo) capaWorks() bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.capa
}

// authHint returns the login method auto settled on before, or "".
func (m *Memo) authHint() AuthMode {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.auth
}

func (m *Memo) setAuthHint(mode AuthMode) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.auth = mode
}

// firstTime reports whether the warning named key has not been given
// before, and notes that it now has.
func (m *Memo) firstTime(key string) bool {
	if m == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.warned[key] {
		return false
	}
	if m.warned == nil {
		m.warned = map[string]bool{}
	}
	m.warned[key] = true
	return true
}

// maxMemoSizes bounds the sizes a Memo keeps.
const maxMemoSizes = 10000

// setTooLarge notes that the message with uid proved to have size octets,
// more than size_limit allows, although the server listed it smaller.
func (m *Memo) setTooLarge(uid string, size int64) {
	if m == nil || uid == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tooLarge == nil || len(m.tooLarge) >= maxMemoSizes {
		m.tooLarge = map[string]int64{} // bounded: a server could make every message one
	}
	m.tooLarge[uid] = size
}

// knownSize returns the size setTooLarge noted for uid, if any.
func (m *Memo) knownSize(uid string) (int64, bool) {
	if m == nil || uid == "" {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.tooLarge[uid]
	return n, ok
}
