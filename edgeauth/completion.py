"""`edgeauth completion bash|zsh`: a shell completion script generated from the argparse tree.

Rule 1: the script is data (one `case` table that bash and zsh both read) plus a small walker;
it never runs edgeauth, so completing works without a configuration and costs nothing.
Rule 2: a subcommand argparse does not list (one added without help, like `_worker`) is
never offered.
Rule 3: an option whose metavar is PATH, FILE or DIR completes file names; any other option
that takes a value completes nothing; else the words offered are the subcommands (or a
positional's choices) and, after a `-`, the options.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

FILE_METAVARS = frozenset({"PATH", "FILE", "DIR"})
_WORD = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Node:
    """What can follow `edgeauth <path>`."""

    path: tuple[str, ...]
    words: tuple[str, ...]  # subcommands, or the choices of a positional argument
    options: tuple[str, ...]
    values: tuple[str, ...]  # the options that take a value
    files: tuple[str, ...]  # of those, the ones that name a file or directory


def nodes(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Node]:
    """Every command path of the tree, depth first, `parser` itself first."""
    words: list[str] = []
    options: list[str] = []
    values: list[str] = []
    files: list[str] = []
    below: list[Node] = []
    leaves: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if name in listed:
                    words.append(name)
                    below += nodes(sub, (*path, name))
        elif action.option_strings:
            options += action.option_strings
            if action.nargs != 0:
                values += action.option_strings
                if action.metavar in FILE_METAVARS:
                    files += action.option_strings
        elif action.choices is not None:
            leaves += [str(choice) for choice in action.choices]
    words += leaves
    same = (tuple(options), tuple(values), tuple(files))
    return [
        Node(path, tuple(words), *same),
        *(Node((*path, leaf), (), *same) for leaf in leaves),
        *below,
    ]


def _joined(items: tuple[str, ...]) -> str:
    for item in items:
        if not _WORD.fullmatch(item):
            raise ValueError(f"not a plain shell word: {item!r}")
    return " ".join(items)


def _table(parser: argparse.ArgumentParser) -> str:
    """`_edgeauth_node PATH` sets the four lists of that path (blank for an unknown one)."""
    lines = ["_edgeauth_node() {", '    case "$1" in']
    for node in nodes(parser):
        lines.append(
            f'        ("{_joined(node.path)}") _ea_sub="{_joined(node.words)}"'
            f' _ea_opts="{_joined(node.options)}" _ea_vals="{_joined(node.values)}"'
            f' _ea_files="{_joined(node.files)}";;'
        )
    lines += ['        (*) _ea_sub="" _ea_opts="" _ea_vals="" _ea_files="";;', "    esac", "}"]
    return "\n".join(lines) + "\n"


# The walk both shells share: skip option values, descend into each subcommand typed.
_WALK = """\
    _edgeauth_node ""
    while ((_ea_i < _ea_end)); do
        _ea_word="${WORDS[_ea_i]}"
        _ea_i=$((_ea_i + 1))
        if ((_ea_skip)); then
            _ea_skip=0
            continue
        fi
        case " $_ea_vals " in (*" $_ea_word "*) _ea_skip=1; continue;; esac
        case " $_ea_sub " in (*" $_ea_word "*)
            _ea_node="${_ea_node:+$_ea_node }$_ea_word"
            _edgeauth_node "$_ea_node";;
        esac
    done
"""

_LOCALS = "    local _ea_sub _ea_opts _ea_vals _ea_files _ea_word _ea_node='' _ea_skip=0\n"

_BASH = """\
_edgeauth() {
{locals}    local _ea_i=1 _ea_end=$COMP_CWORD _ea_cur="${COMP_WORDS[COMP_CWORD]}"
{walk}    COMPREPLY=()
    if ((_ea_skip)); then
        case " $_ea_files " in (*" ${COMP_WORDS[COMP_CWORD-1]} "*)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$_ea_cur");;
        esac
        return 0
    fi
    case "$_ea_cur" in
        (-*) mapfile -t COMPREPLY < <(compgen -W "$_ea_opts" -- "$_ea_cur");;
        (*) mapfile -t COMPREPLY < <(compgen -W "$_ea_sub" -- "$_ea_cur");;
    esac
}
complete -F _edgeauth edgeauth
"""

_ZSH = """\
_edgeauth() {
{locals}    local _ea_i=2 _ea_end=$CURRENT _ea_cur="${words[CURRENT]}"
{walk}    if ((_ea_skip)); then
        case " $_ea_files " in (*" ${words[CURRENT-1]} "*) _files; return;; esac
        return 1
    fi
    case "$_ea_cur" in
        (-*) compadd -- ${=_ea_opts};;
        (*) compadd -- ${=_ea_sub};;
    esac
}
if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
    _edgeauth "$@"
else
    compdef _edgeauth edgeauth
fi
"""

HEADERS = {
    "bash": "# bash completion for edgeauth: `source <(edgeauth completion bash)`\n",
    "zsh": "#compdef edgeauth\n"
    "# zsh completion for edgeauth: `edgeauth completion zsh > ~/.zfunc/_edgeauth`\n",
}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` ("bash" or "zsh")."""
    words = "COMP_WORDS" if shell == "bash" else "words"
    body = (_BASH if shell == "bash" else _ZSH).replace("{locals}", _LOCALS)
    body = body.replace("{walk}", _WALK.replace("WORDS", words))
    return HEADERS[shell] + _table(parser) + body
