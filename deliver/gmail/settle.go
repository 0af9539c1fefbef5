package gmail

import (
	"context"
	"time"

	"github.com/popfetch/popfetch/deliver"
)

// Kind is the kind of this target's pending records (deliver.Ref.Kind).
const Kind = "gmail"

// noMessageID is the pending key of a message without a Message-ID: it
// cannot be one (it has brackets), and Settle reports such a message
// missing.
const noMessageID = "<>"

func (t *Target) identity() string {
	if t.Identity != "" {
		return t.Identity
	}
	return t.target()
}

// Ref implements deliver.Referenced: the message is found by its
// Message-ID.
func (s *Staged) Ref() deliver.Ref {
	key := s.id
	if key == "" {
		key = noMessageID
	}
	return deliver.Ref{Kind: Kind, Target: s.t.identity(), Key: key}
}

// Settles implements deliver.Settler: r is this Target's if it is of
// kind gmail and names this mailbox.
func (t *Target) Settles(r deliver.Ref) bool {
	return r.Kind == Kind && r.Target == t.identity()
}

// DefaultSettleGrace is how old a pending record must be before Settle
// reports its message missing.
const DefaultSettleGrace = 30 * time.Second

// Settle implements deliver.Settler: each message is looked for by its
// Message-ID (see Delivered), one search each; one without a Message-ID
// is reported missing.
//
// An import whose answer a crash cut off may be stored and not yet found
// by a search (Google's search index follows the mailbox, and Google
// documents no bound on how far behind): a message not found is looked
// for again once its record is SettleGrace old, and only then reported
// missing. That wait happens only right after a crash (a daemon that
// systemd restarts at once); a poll minutes later does not wait.
func (t *Target) Settle(ctx context.Context, refs []deliver.Ref) ([]bool, error) {
	found := make([]bool, len(refs))
	seen := map[string]bool{}
	if err := t.settle(ctx, refs, found, seen); err != nil {
		return nil, err
	}
	grace := t.SettleGrace
	if grace == 0 {
		grace = DefaultSettleGrace
	}
	missing := func(i int) bool { return !found[i] && refs[i].Key != noMessageID }
	waited, err := deliver.WaitGrace(ctx, refs, missing, grace)
	if err != nil {
		return nil, err
	}
	if !waited {
		return found, nil
	}
	clear(seen)
	if err := t.settle(ctx, refs, found, seen); err != nil {
		return nil, err
	}
	return found, nil
}

// settle searches for each ref not found yet, once per Message-ID.
func (t *Target) settle(ctx context.Context, refs []deliver.Ref, found []bool, seen map[string]bool) error {
	for i, r := range refs {
		if found[i] || r.Key == noMessageID {
			continue
		}
		ok, done := seen[r.Key]
		if !done {
			var err error
			if ok, err = t.Delivered(ctx, r.Key); err != nil {
				return err
			}
			seen[r.Key] = ok
		}
		found[i] = ok
	}
	return nil
}
