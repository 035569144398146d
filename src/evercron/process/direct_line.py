"""Command lines that need no shell at all: a program, literal words, simple redirections.

`date +%s.%N >> log` run by `/bin/sh -c` costs a whole extra exec (the shell's, about as
much CPU as `date` itself) for nothing the shell adds: no expansion,
no operator, only a redirection the kernel can do on its own. `parse_direct` recognises
exactly such lines and gives the argument vector and the redirections, which
`posix_spawn` then carries out itself (its file actions open, duplicate and close
descriptors in the child, in order, before the exec - as the shell would).

Recognised, conservatively (anything else is left to the shell):

- no character that the shell could expand or treat as an operator anywhere in the line,
  quoted or not: ``$ ` \\ * ? [ ] { } ~ ! # ; | ( )``, ``&`` but in ``>&`` and ``<&``,
  no line break;
- words made of plain characters, `'single'` and `"double"` quoted parts (literal here,
  since the characters that make double quotes special are refused);
- redirections `<`, `>`, `>>`, `N>&M`, `N<&M`, `N>&-` (N and M single digits, M either
  0-2 or a descriptor the line itself opened before);
- a first word that names an external program (not a shell builtin or keyword, not an
  assignment).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from evercron.process.shell_exec import NOT_PROGRAMS, PROGRAM_NAME

_REFUSED = frozenset("$`\\*?[]{}~!#;|()\n\r")
_LONE_AMPERSAND = re.compile(r"(?<![<>])&")  # `&` but in `>&` and `<&`
_BLANKS = " \t"
_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


@dataclass(frozen=True, slots=True)
class Redirection:
    """One redirection, applied in the child before the exec: descriptor `fd` opened on
    `path` with `flags` (mode 0666 less the umask), or made a copy of `source`, or closed
    (neither)."""

    fd: int
    path: str | None = None
    flags: int = 0
    source: int | None = None


@dataclass(frozen=True, slots=True)
class DirectLine:
    """A command line that runs without a shell: what to exec, and its redirections in
    the order the shell would apply them."""

    argv: tuple[str, ...]
    redirections: tuple[Redirection, ...]

    @property
    def program(self) -> str:
        """The program to run: a path, or a name to look up in PATH."""
        return self.argv[0]


@functools.lru_cache(maxsize=4096)  # a job's command is the same at every firing
def parse_direct(line: str) -> DirectLine | None:
    """The line as a program and redirections, or None when it needs a shell (see the
    module text)."""
    if _REFUSED.intersection(line) or _LONE_AMPERSAND.search(line):
        return None
    words: list[str] = []
    redirections: list[Redirection] = []
    opened = {0, 1, 2}
    position, end = 0, len(line)
    while True:
        while position < end and line[position] in _BLANKS:
            position += 1
        if position == end:
            break
        word, position, unquoted = _word(line, position)
        if word is None:
            return None
        if position < end and line[position] in "<>":
            if (word or not unquoted) and not (unquoted and word.isdigit() and len(word) == 1):
                return None  # `a>f` or `10>f`: leave such spellings to the shell
            fd = int(word) if word else None
            found = _redirection(line, position, fd, opened)
            if found is None:
                return None
            redirection, position = found
            redirections.append(redirection)
            if redirection.path is not None or redirection.source is not None:
                opened.add(redirection.fd)
            else:
                opened.discard(redirection.fd)
            continue
        words.append(word)
    if not words or not PROGRAM_NAME.fullmatch(words[0]) or words[0] in NOT_PROGRAMS:
        return None
    return DirectLine(tuple(words), tuple(redirections))


def _word(line: str, position: int) -> tuple[str | None, int, bool]:
    """The word starting at `position` (None if a quote is unbalanced), where it ends,
    and whether it had no quotes at all."""
    parts: list[str] = []
    unquoted = True
    end = len(line)
    while position < end and line[position] not in _BLANKS and line[position] not in "<>":
        character = line[position]
        if character in "'\"":
            closing = line.find(character, position + 1)
            if closing < 0:
                return None, position, False
            parts.append(line[position + 1 : closing])
            position = closing + 1
            unquoted = False
        else:
            parts.append(character)
            position += 1
    return "".join(parts), position, unquoted


def _redirection(
    line: str, position: int, fd: int | None, opened: set[int]
) -> tuple[Redirection, int] | None:
    """The redirection whose operator starts at `position`, and where it ends."""
    operator = line[position]
    position += 1
    if position < len(line) and line[position] in "<>|":
        if not (operator == ">" and line[position] == ">"):
            return None  # `<>`, `>|`, `<<`: here-documents and the rarer forms
        operator = ">>"
        position += 1
    duplicate = position < len(line) and line[position] == "&"
    if duplicate:
        position += 1
    while position < len(line) and line[position] in _BLANKS:
        position += 1
    target, position, unquoted = _word(line, position)
    if not target:
        return None  # a missing target (or an unbalanced quote): a syntax error
    if fd is None:
        fd = 0 if operator == "<" else 1
    if duplicate:
        if operator == ">>" or not unquoted:
            return None
        if target == "-":
            return Redirection(fd), position
        if len(target) != 1 or not target.isdigit() or int(target) not in opened:
            return None  # a descriptor of the line's own only, never one of ours
        return Redirection(fd, source=int(target)), position
    flags = os.O_RDONLY if operator == "<" else _APPEND if operator == ">>" else _TRUNCATE
    return Redirection(fd, path=target, flags=flags), position
