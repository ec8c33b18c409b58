"""`edgeauth completion bash|zsh`: the scripts as a shell runs them. The bash script is sourced
in a real bash and its function called with COMP_WORDS/COMP_CWORD as bash's completion would."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeauth.cli import _parser

CONSOLE_SCRIPT = Path(sys.executable).parent / "edgeauth"
# Calls the completion function as bash's programmable completion does, then prints the
# candidates one a line; the words are the arguments after the script's path.
CALL = (
    'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
    '_edgeauth; printf "%s\\n" "${COMPREPLY[@]}"'
)


def _generate(shell: str, directory: Path) -> Path:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = directory / f"edgeauth.{shell}"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return _generate("bash", tmp_path_factory.mktemp("completion"))


def complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    """The candidates bash offers for `line` (a trailing space starts a new, empty word)."""
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", CALL, "bash", str(script), *line.split(" ")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return [word for word in result.stdout.splitlines() if word]


def _visible(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [choice.dest for choice in sub._choices_actions]


def test_the_bash_script_registers_for_edgeauth(bash_script: Path) -> None:
    program = 'source "$1"; complete -p edgeauth'
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program, "bash", str(bash_script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() == "complete -F _edgeauth edgeauth", result.stderr


def test_commands_are_the_ones_help_lists_and_never_the_worker(bash_script: Path) -> None:
    offered = complete(bash_script, "edgeauth ")
    assert offered == _visible(_parser())
    assert "consumers" in offered
    assert "_worker" not in offered
    assert complete(bash_script, "edgeauth con") == ["consumers"]
    assert complete(bash_script, "edgeauth _") == []
    assert complete(bash_script, "edgeauth --v") == ["--version"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("edgeauth consumers ", ["list", "show", "add", "rm"]),
        ("edgeauth apps r", ["rotate-secret", "rm"]),
        ("edgeauth tokens ", ["list", "revoke"]),
        ("edgeauth import ", ["kong"]),
        ("edgeauth completion ", ["bash", "zsh"]),
        # an option's value is skipped when finding the command
        ("edgeauth apps --help rotate-secret --client-", ["--client-secret-file"]),
        ("edgeauth consumers rm alice --y", ["--yes"]),
        ("edgeauth check-config --j", ["--json"]),
        # a positional that happens to be a command name is not descended into
        ("edgeauth apps add list --pu", ["--public"]),
        # an option that takes a value that is not a file completes nothing
        ("edgeauth apps add alice --name ", []),
        ("edgeauth tokens list --user ", []),
    ],
)
def test_subcommands_and_options(bash_script: Path, line: str, expected: list[str]) -> None:
    assert complete(bash_script, line) == expected


def test_option_values_skip_and_the_action_is_found_after_them(bash_script: Path) -> None:
    offered = complete(bash_script, "edgeauth consumers list -c consumers --")
    assert "--tags" in offered
    assert "--yes" not in offered  # still `consumers list`, not `consumers rm`


@pytest.mark.parametrize(
    "line",
    [
        "edgeauth serve -c ",
        "edgeauth consumers list --config ",
        "edgeauth apps add alice --client-secret-file ",
        "edgeauth apps rotate-secret web --client-secret-file ",
        "edgeauth consumers list --admin-token-file ",
        "edgeauth import kong --deck ",
        "edgeauth gen-cert --dir ",
    ],
)
def test_config_and_file_options_complete_file_names(
    bash_script: Path, tmp_path: Path, line: str
) -> None:
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "secret.txt").write_text("")
    assert sorted(complete(bash_script, line, cwd=tmp_path)) == ["config.toml", "secret.txt"]
    assert complete(bash_script, line + "sec", cwd=tmp_path) == ["secret.txt"]


def test_the_zsh_script_is_valid_zsh(tmp_path: Path) -> None:
    script = _generate("zsh", tmp_path)
    assert script.read_text().startswith("#compdef edgeauth\n")
    assert "_worker" not in script.read_text()
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (tests install no system packages): syntax unchecked")
    result = subprocess.run(
        [zsh, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
