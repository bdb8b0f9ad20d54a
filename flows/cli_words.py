"""Error messages in the words the user typed: ``--max-cloud 200``, not ``max_cloud=200.0``.

The tasks and models raise their errors in the Python API's words (a parameter name and the
value's repr), which is right for a notebook user and wrong on the command line. The command
line rewrites each message at the one place it prints it: ``name=VALUE`` of a parameter the
command has a flag for becomes ``--flag TYPED`` (the text the user typed for it), and a bare
parameter name with an underscore (``raise max_cloud``) becomes its flag. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Mapping, Sequence

_CLOSING = {"[": "]", "(": ")", "{": "}"}


def command_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """Parameter name -> flag of the (sub-)command that ``argv`` chose.

    The options' ``dest`` names, and the ``param_flags`` a command sets as a default for the
    parameters it names otherwise (``event_date`` -> ``--date``).
    """
    flags: dict[str, str] = {}
    chosen: argparse.ArgumentParser | None = parser
    while chosen is not None:
        following = None
        for action in chosen._actions:
            if isinstance(action, argparse._SubParsersAction):
                following = next(
                    (sub for name, sub in action.choices.items() if name in argv), None
                )
            elif action.option_strings:
                long = [s for s in action.option_strings if s.startswith("--")]
                flags.setdefault(action.dest, (long or action.option_strings)[0])
        flags.update(chosen.get_default("param_flags") or {})
        chosen = following
    return flags


def typed_values(argv: Sequence[str], flags: Mapping[str, str]) -> dict[str, str]:
    """The text typed after each flag in ``argv`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    wanted = set(flags.values())
    typed: dict[str, str] = {}
    for index, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if name in wanted and eq:
            typed[name] = value
        elif token in wanted and index + 1 < len(argv):
            typed[token] = argv[index + 1]
    return typed


def in_user_words(message: str, flags: Mapping[str, str], typed: Mapping[str, str]) -> str:
    """``message`` with parameter names replaced by the flags (and values as typed)."""
    names = sorted(flags, key=len, reverse=True)
    if not names:
        return message
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, names)) + r")(=|\b)")
    out: list[str] = []
    position = 0
    for match in pattern.finditer(message):
        if match.start() < position:
            continue
        name, assigned = match.group(1), match.group(2) == "="
        if not assigned and "_" not in name:
            continue  # a plain word (aoi, start, catalog) may be English; keep it
        flag = flags[name]
        out.append(message[position : match.start()])
        if assigned:
            end = _value_end(message, match.end())
            value = typed.get(flag)
            shown = shlex.quote(value) if value is not None else message[match.end() : end]
            out.append(f"{flag} {shown}")
            position = end
        else:
            out.append(flag)
            position = match.end()
    out.append(message[position:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """End of the Python repr that starts at ``start`` (bracketed, quoted or one word)."""
    if start >= len(text):
        return start
    first = text[start]
    if first in "'\"":
        close = text.find(first, start + 1)
        return len(text) if close < 0 else close + 1
    if first in _CLOSING:
        depth, quote = 0, None
        for index in range(start, len(text)):
            char = text[index]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in _CLOSING:
                depth += 1
            elif char in _CLOSING.values():
                depth -= 1
                if depth == 0:
                    return index + 1
        return len(text)
    match = re.compile(r"[^\s;,]+").match(text, start)
    end = match.end() if match else start
    return end - 1 if end > start and text[end - 1] in ".:" else end
