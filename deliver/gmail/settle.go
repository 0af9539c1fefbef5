package gmail

import (
	"context"

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

// Settle implements deliver.Settler: each message is looked for by its
// Message-ID (see Delivered), one search each; one without a Message-ID
// is reported missing.
func (t *Target) Settle(ctx context.Context, refs []deliver.Ref) ([]bool, error) {
	found := make([]bool, len(refs))
	seen := map[string]bool{}
	for i, r := range refs {
		if r.Key == noMessageID {
			continue
		}
		ok, done := seen[r.Key]
		if !done {
			var err error
			if ok, err = t.Delivered(ctx, r.Key); err != nil {
				return nil, err
			}
			seen[r.Key] = ok
		}
		found[i] = ok
	}
	return found, nil
}
