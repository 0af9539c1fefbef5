package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/popfetch/popfetch/config"
	"github.com/popfetch/popfetch/docs"
)

// The shell completion scripts ask popfetch itself what fits, with the
// hidden --generate-bash-completion flag, so they know every command,
// flag and the accounts of the configuration.
const bashCompletion = `# bash completion for popfetch.
# Install: popfetch completion bash > ~/.local/share/bash-completion/completions/popfetch
_popfetch() {
  local cur="${COMP_WORDS[COMP_CWORD]}" words
  if [[ "$cur" == -* ]]; then
    # "-" asks for every flag; compgen picks those that fit.
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD-1}" - --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _popfetch popfetch
`

const zshCompletion = `#compdef popfetch
# zsh completion for popfetch.
# Install: popfetch completion zsh > "${fpath[1]}/_popfetch"
_popfetch() {
  local -a opts
  local cur=${words[CURRENT]}
  if [[ $cur == -* ]]; then
    opts=("${(@f)$(${words[1]} ${words[2,CURRENT-1]} - --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[1]} ${words[2,CURRENT-1]} --generate-bash-completion 2>/dev/null)}")
  fi
  opts=(${opts:#})
  if (( ${#opts} )); then
    _describe 'popfetch' opts
  else
    _files
  fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _popfetch "$@"
else
  compdef _popfetch popfetch
fi
`

// completionCommand is "popfetch completion bash|zsh|fish".
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:            "completion",
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Usage:           "print the shell completion script for bash, zsh or fish",
		ArgsUsage:       "bash|zsh|fish",
		Description: "bash: popfetch completion bash > ~/.local/share/bash-completion/completions/popfetch\n" +
			"zsh:  popfetch completion zsh > \"${fpath[1]}/_popfetch\"\n" +
			"fish: popfetch completion fish > ~/.config/fish/completions/popfetch.fish\n" +
			"Commands, flags and the configuration's account names complete.",
		BashComplete: func(c *cli.Context) {
			fmt.Fprintln(c.App.Writer, "bash\nzsh\nfish")
		},
		Action: func(c *cli.Context) error {
			var script string
			switch c.Args().First() {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				script = "# fish completion for popfetch.\n# Install: popfetch completion fish > ~/.config/fish/completions/popfetch.fish\n" +
					s + fishAccounts
			default:
				return usageError{"usage: popfetch completion bash|zsh|fish"}
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
	}
}

// fishAccounts asks popfetch, as the bash script does, for what fits
// the words typed so far: account names too.
const fishAccounts = `complete -c popfetch -f -a '(popfetch (commandline -opc)[2..-1] --generate-bash-completion 2>/dev/null)'
`

// manCommand is the hidden "popfetch man": the manual page, made from the
// command-line definition (make docs writes it to docs/popfetch.1).
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Hidden: true,
		Usage:  "print the manual page (roff)",
		Action: func(c *cli.Context) error {
			return writeManPage(c.App.Writer, c.App, docs.ConfigReference)
		},
	}
}

// completeAccounts completes a command's ACCOUNT arguments with the
// configuration's account names (and, at the top level, the commands);
// after a "-" it completes flags, as urfave/cli does by default.
func completeAccounts(c *cli.Context) {
	root := c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name
	if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
		if root {
			cli.DefaultAppComplete(c)
		} else {
			cli.DefaultCompleteWithFlags(c.Command)(c)
		}
		return
	}
	if root {
		cli.DefaultAppComplete(c)
	}
	o := readOptions(c)
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return
	}
	for _, a := range cfg.Accounts {
		fmt.Fprintln(c.App.Writer, a.Name)
	}
}
