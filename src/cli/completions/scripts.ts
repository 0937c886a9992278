// zsh and fish completion scripts (bash's is bash.sh, shellchecked by `npm run lint`).
/** zsh completion for banger (`source <(banger completion zsh)` after compinit): asks `banger __complete`, files when it has nothing. */
export const ZSH = `#compdef banger
_banger() {
  local -a candidates
  candidates=("\${(@f)$(\${words[1]} __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ -n \${candidates[1]} ]]; then
    compadd -Q -- "\${candidates[@]}"
  else
    _files
  fi
}
compdef _banger banger
`;

/** fish completion for banger (`banger completion fish | source`): asks `banger __complete`, files when it has nothing. */
export const FISH = `function __banger_complete
    set -l words (commandline -opc)
    set -e words[1]
    # quoted: an empty current word is still one (empty) argument
    set -l cur (commandline -ct)
    set -l out (banger __complete $words "$cur" 2>/dev/null)
    if test (count $out) -gt 0
        printf '%s\\n' $out
    else
        __fish_complete_path (commandline -ct)
    end
end
complete -c banger -f -a '(__banger_complete)'
`;
