package main

import (
	"fmt"
	"io"
	"os"
	"slices"
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
		BashComplete: completeByPosition([]string{"bash", "zsh", "fish"}, 0),
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
					fishFlagValues(s) + fishAccounts
			default:
				return usageError{"usage: popfetch completion bash|zsh|fish" + didYouMean(c.Args().First(), "bash", "zsh", "fish")}
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
	}
}

// fishAccounts asks popfetch, as the bash script does, for what fits
// the words typed so far (account names, a command's arguments, a flag's
// values); where popfetch offers nothing, file names, as bash's
// "-o default" and zsh's _files give.
const fishAccounts = `function __popfetch_complete
    set -l out (popfetch (commandline -opc)[2..-1] --generate-bash-completion 2>/dev/null)
    if test (count $out) -gt 0
        printf '%s\n' $out
    else
        __fish_complete_path (commandline -ct)
    end
end
complete -c popfetch -f -a '(__popfetch_complete)'
`

// fishFlagValues has fish ask popfetch for the value of a flag that
// takes one (--log-format's choices; a file for --config), where
// urfave/cli's script offers nothing.
func fishFlagValues(script string) string {
	lines := strings.Split(script, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "complete -c popfetch ") && strings.Contains(l, " -l ") && strings.Contains(l, " -r ") {
			lines[i] = "complete -c popfetch -a '(__popfetch_complete)' " + strings.TrimPrefix(l, "complete -c popfetch ")
		}
	}
	return strings.Join(lines, "\n")
}

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
	if completeFlags(c) {
		return
	}
	if isRoot(c) && c.NArg() == 0 {
		printCommands(c) // the commands, before any account
	}
	printAccounts(c)
}

// printCommands prints the commands, as cli.DefaultAppComplete does
// (with their usage for zsh), but also after a flag typed in full
// ("popfetch -k <TAB>"), where DefaultAppComplete offers the flags that
// start like it instead.
func printCommands(c *cli.Context) {
	for _, cmd := range c.App.Commands {
		if cmd.Hidden {
			continue
		}
		for _, name := range cmd.Names() {
			if strings.HasSuffix(os.Getenv("0"), "zsh") {
				fmt.Fprintf(c.App.Writer, "%s:%s\n", name, cmd.Usage)
			} else {
				fmt.Fprintln(c.App.Writer, name)
			}
		}
	}
}

// isRoot reports whether c is the application's context, not a command's.
func isRoot(c *cli.Context) bool {
	return c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name
}

// completeFlags prints the flags that fit when the word being completed
// is one (the bash and zsh scripts then pass "-" as the last word before
// --generate-bash-completion), and reports whether it was. A flag typed
// in full before the word ("popfetch -k <TAB>") is not one: the word
// after it is an account or a command.
func completeFlags(c *cli.Context) bool {
	n := len(os.Args)
	if n <= 2 || os.Args[n-2] != "-" {
		return false
	}
	if isRoot(c) {
		cli.DefaultAppComplete(c)
	} else {
		cli.DefaultCompleteWithFlags(c.Command)(c)
	}
	return true
}

// printAccounts prints the configuration's account names, one a line,
// but those already typed; nothing if the configuration does not load.
func printAccounts(c *cli.Context) {
	o := readOptions(c)
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return
	}
	typed := c.Args().Slice()
	for _, a := range cfg.Accounts {
		if !slices.Contains(typed, a.Name) {
			fmt.Fprintln(c.App.Writer, a.Name)
		}
	}
}

// completeOneAccount completes the one ACCOUNT a command takes (auth,
// list): nothing once it is typed.
func completeOneAccount(c *cli.Context) {
	if completeFlags(c) {
		return
	}
	if c.NArg() == 0 {
		printAccounts(c)
	}
}

// completeByPosition returns a completion for a command whose first
// argument is one of first and whose next ones are account names: none,
// one ("uidl export ACCOUNT") or, with accounts < 0, any number ("config
// check ACCOUNT..."). Past those it offers nothing, and the shells
// complete file names.
func completeByPosition(first []string, accounts int) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if completeFlags(c) {
			return
		}
		n := c.NArg()
		switch {
		case n == 0:
			for _, w := range first {
				fmt.Fprintln(c.App.Writer, w)
			}
		case slices.Contains(first, c.Args().First()) && (accounts < 0 || n <= accounts):
			printAccounts(c)
		}
	}
}

// completeFlagValue answers a completion whose word follows a flag that
// takes a value (args ends with the flag, then --generate-bash-completion):
// the flag's choices, if it has a fixed set, else nothing, so that the
// shells complete file names. urfave/cli would take the flag as lacking
// its value and offer nothing of use. It reports whether it answered.
func completeFlagValue(app *cli.App, args []string, w io.Writer) bool {
	if len(args) < 3 {
		return false
	}
	prev := args[len(args)-2]
	if !strings.HasPrefix(prev, "-") || strings.Contains(prev, "=") || prev == "-" || prev == "--" {
		return false
	}
	name := strings.TrimLeft(prev, "-")
	flags := slices.Clone(app.Flags)
	for _, c := range app.Commands {
		flags = append(flags, c.Flags...)
	}
	for _, f := range flags {
		d, ok := f.(cli.DocGenerationFlag)
		if !ok || !d.TakesValue() || !slices.Contains(f.Names(), name) {
			continue
		}
		for _, v := range flagChoices(f.Names()[0]) {
			fmt.Fprintln(w, v)
		}
		return true
	}
	return false
}

// flagChoices are the values a flag takes, when it takes one of a fixed
// set.
func flagChoices(name string) []string {
	switch name {
	case "log-format":
		return []string{"auto", "human", "text", "json"}
	}
	return nil
}
