"""One process less for the commonest cron line: a single external command.

`/bin/sh -c 'date >> log'` forks `date` and waits for it (dash execs a last simple
command directly only when it has no redirection). `exec date >> log` means the same -
the same program, arguments, redirections, exit status and signals - but the shell
becomes the program: a fork, a wait and a shell exit less per run. Only a line that is
recognised as exactly that gets the `exec`: one command, a plain program name or path
(not a builtin, keyword, function or assignment), words and simple redirections only.
Anything else is left as it is. One visible difference: a missing program is reported
as `sh: 1: exec: name: not found` (exit status 127 either way).
"""

from __future__ import annotations

import functools
import re
import shlex

NOT_PROGRAMS = frozenset(
    (  # noqa: SIM905 (a list of 60 words reads better as words)
        ". : [ [[ ]] alias bg break cd chdir command continue echo eval exec exit export "
        "false fc fg getopts hash jobs kill local printf pwd read readonly return set shift "
        "test times trap true type ulimit umask unalias unset wait ! { } case do done elif "
        "else esac fi for function if in select then time until while"
    ).split()
)
"""dash's builtins and the shell's reserved words: run as a program (with `exec`, or with
no shell at all) these would mean something else, or nothing."""
PROGRAM_NAME = re.compile(r"[A-Za-z0-9_./+-]+")
"""A program name or path that needs no quoting (what both recognisers accept)."""
_REDIRECTIONS = frozenset({">", ">>", "<", ">&", "<&"})
_OPERATOR_CHARACTERS = ";&|()<>"


def exec_form(script: str) -> str:
    """`script` with `exec ` in front when it is a single simple command of an external
    program (see the module text); else `script` unchanged."""
    return f"exec {script}" if is_single_program(script) else script


@functools.lru_cache(maxsize=4096)  # a job's command is the same at every firing
def is_single_program(script: str) -> bool:
    """Whether `script` is one simple command running an external program: words and
    simple redirections, no operator, substitution, here-document or line break."""
    if "\n" in script or "`" in script or "$(" in script or "<<" in script:
        return False
    lexer = shlex.shlex(script, posix=True, punctuation_chars=_OPERATOR_CHARACTERS)
    lexer.whitespace_split = True
    lexer.commenters = ""  # `#` starts a comment only at a word's start in sh: keep it
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: the shell reports it as it is
        return False
    if not tokens:
        return False
    for token in tokens:
        if token and token[0] in _OPERATOR_CHARACTERS and token not in _REDIRECTIONS:
            return False
    first = tokens[0]
    return bool(PROGRAM_NAME.fullmatch(first)) and first not in NOT_PROGRAMS
