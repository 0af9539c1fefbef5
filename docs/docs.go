// Package docs holds the reference documents that the popfetch binary
// carries: the configuration reference, from which "popfetch man" writes
// the manual page's CONFIGURATION section, so that the page and
// docs/config.md cannot say different things.
package docs

import _ "embed"

// ConfigReference is docs/config.md, the configuration reference.
//
//go:embed config.md
var ConfigReference string
