# shellcheck shell=bash
# bash completion for banger: `source <(banger completion bash)`, or save the
# output as /etc/bash_completion.d/banger. Candidates come from `banger
# __complete WORDS…` (the CLI's own command definitions; VM, session and image
# names from a running daemon, nothing when none runs). None: file names.
_banger() {
  local words=("${COMP_WORDS[@]:1:COMP_CWORD}")
  mapfile -t COMPREPLY < <("${COMP_WORDS[0]}" __complete "${words[@]}" 2> /dev/null)
}
complete -o default -F _banger banger
