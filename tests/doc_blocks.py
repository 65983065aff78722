"""Run a Markdown document's code blocks and compare what they print with what it shows.

The conventions the README and mappings/README.md follow:

- ```` ```console ````: ``$ command`` lines, each followed by the output it shows (stdout and
  stderr as a terminal interleaves them). A line ``...`` stands for any number of lines; a
  line ending in ``...`` for any line that starts with the rest. Output is compared after
  the working directory's absolute path is removed, trailing spaces are stripped and the
  progress lines a log gets every few seconds are left out.
- ```` ```sh ````: commands whose output is not shown; each must exit 0, or with the code a
  trailing ``# exit N`` comment gives. ``cd DIR`` changes the directory of the commands
  after it.
- ```` ```python ````: a script; it must exit 0. When the next block is ```` ```text ````,
  it is what the script prints on stdout, compared as for ``console``.
- ```` ```yaml ````: a map (or, without ``version:``, a list of map rules) that must validate;
  preceded by ``<!-- doc-test: file NAME -->`` it is also written to NAME for the blocks
  after it.
- ```` ```json ```` preceded by ``<!-- doc-test: fields of `COMMAND` -->``: an outline of
  the JSON the command prints; every object in it must have exactly the keys the real
  output's object at the same place has (a key ``...`` stands for the rest).
- Every other block, and any block preceded by ``<!-- doc-test: skip (why) -->``, is not
  run; the reason must be given.

The blocks of one section (a ``## `` heading) run in order in one directory, so later
blocks see what earlier ones wrote; sections are independent of each other.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"<!--\s*doc-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->\s*$")
_FIELDS = re.compile(r"<!--\s*doc-test:\s*fields of `(?P<command>[^`]+)`\s*-->\s*$")
_FILE = re.compile(r"<!--\s*doc-test:\s*file (?P<name>\S+)\s*-->\s*$")
# What a log gets every few seconds while a command works: when depends on the machine.
_PROGRESS = re.compile(r"^[A-Za-z][\w :]*(: \d+/\d+ \w+.*\(\d+%\).*| \.\.\.)$")
_EXIT = re.compile(r"\s#\s*exit\s+(\d+)\b.*$")


@dataclass
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    skip: str | None = None
    output: Block | None = None  # a python block's shown output
    command: str | None = None  # what prints the JSON a json block outlines
    file: str | None = None  # where a yaml block is written


@dataclass
class Outcome:
    block: Block
    problems: list[str] = field(default_factory=list)


def sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, text) of each ``## `` section (the text before the first: heading "")."""
    found: list[tuple[str, str]] = []
    heading, start = "", 0
    for m in re.finditer(r"^## (.+)$", markdown, re.M):
        found.append((heading, markdown[start : m.start()]))
        heading, start = m.group(1).strip(), m.start()
    found.append((heading, markdown[start:]))
    return [(h, text) for h, text in found if "```" in text]


def blocks(markdown: str, first_line: int = 1) -> list[Block]:
    """The document's fenced blocks, in order; a ``text`` block right after a ``python``
    block becomes that block's ``output``."""
    found: list[Block] = []
    for m in _FENCE.finditer(markdown):
        line = markdown.count("\n", 0, m.start()) + first_line
        before = markdown[: m.start()].rstrip("\n").rpartition("\n")[2]
        skip = _SKIP.search(before)
        fields = _FIELDS.search(before)
        block = Block(m.group(1), m.group(2), line, skip.group("why") if skip else None)
        block.command = fields.group("command") if fields else None
        file = _FILE.search(before)
        block.file = file.group("name") if file else None
        previous = found[-1] if found else None
        gap = markdown[markdown.rfind("```", 0, m.start()) + 3 : m.start()] if previous else ""
        if (
            block.language == "text"
            and previous is not None
            and previous.language == "python"
            and previous.output is None
            and not gap.strip()
        ):
            previous.output = block
            continue
        found.append(block)
    return found


def matches(expected: str, actual: str) -> str | None:
    """None when ``actual`` is what ``expected`` shows, else where they part."""
    want = [line.rstrip() for line in expected.strip("\n").splitlines()]
    got = [line.rstrip() for line in actual.strip("\n").splitlines()]

    def fits(pattern: str, line: str) -> bool:
        if pattern.endswith("...") and pattern.strip() != "...":
            return line.startswith(pattern[:-3])
        return pattern == line

    # Backtracking over "..." lines; documents are small.
    def walk(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(walk(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and fits(want[i], got[j]) and walk(i + 1, j + 1)

    if walk(0, 0):
        return None
    # Report the first expected line that cannot be found in order.
    j = 0
    for pattern in want:
        if pattern.strip() == "...":
            continue
        while j < len(got) and not fits(pattern, got[j]):
            j += 1
        if j == len(got):
            return f"expected {pattern!r}; the output was:\n{actual}"
        j += 1
    return f"the output has lines the document does not show; the output was:\n{actual}"


def _environment(bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as on a terminal
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "240"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _shell(
    command: str, cwd: Path, env: dict[str, str], stdout_only: bool = False
) -> tuple[int, str]:
    """Run ``command`` in bash; its output (stdout only, or as a terminal shows both) with
    the working directory's path taken out."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stdout_only else subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout if done.returncode == 0 or not stdout_only else done.stdout + done.stderr
    output = "".join(line for line in output.splitlines(True) if not _PROGRESS.match(line))
    return done.returncode, output.replace(f"{cwd}/", "").replace(str(cwd), ".")


def _run(
    command: str, cwd: Path, env: dict[str, str], stdout_only: bool = False
) -> tuple[int, str]:
    """Run a block's command: a plain ``ckptmigrate ...`` line in this process (TensorFlow,
    which most of the README's commands import, is then imported once per test process
    instead of once per command: two thirds of the README tests' time), anything else in
    bash. The CLI restores what it changes (signal handlers) before it returns."""
    words = _plain_ckptmigrate(command)
    if words is None:
        return _shell(command, cwd, env, stdout_only)
    from typer.testing import CliRunner

    from ckptmigrate.cli import app

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, words[1:], env={k: env[k] for k in _CLI_ENVIRONMENT})
    finally:
        os.chdir(previous)
    output = result.stdout if stdout_only and result.exit_code == 0 else result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output += "".join(traceback.format_exception(result.exception))
    output = "".join(line for line in output.splitlines(True) if not _PROGRESS.match(line))
    return result.exit_code, output.replace(f"{cwd}/", "").replace(str(cwd), ".")


_CLI_ENVIRONMENT = ("NO_COLOR", "COLUMNS", "TF_CPP_MIN_LOG_LEVEL")


def _plain_ckptmigrate(command: str) -> list[str] | None:
    """The words of a ``ckptmigrate`` command that bash would run as they are (no pipe,
    redirection, list, substitution, variable or glob), else None."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:
        return None
    if not words or words[0] != "ckptmigrate":
        return None
    if any(not set(word) - set("();<>|&") or set(word) & set("$`*?~{}") for word in words):
        return None
    return words


def _commands(text: str) -> list[str]:
    """Lines joined across trailing backslashes."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined


class Runner:
    """Runs one document's blocks in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.cwd = workdir
        self.env = _environment(Path(sys.executable).parent)

    def run(self, block: Block) -> Outcome:
        outcome = Outcome(block)
        runner = getattr(self, f"_{block.language}", None)
        if block.skip is None and runner is not None:
            runner(block, outcome.problems)
        return outcome

    def _console(self, block: Block, problems: list[str]) -> None:
        sessions: list[tuple[str, list[str]]] = []
        for line in _commands(block.text):
            if line.startswith("$ "):
                sessions.append((line[2:], []))
            elif sessions:
                sessions[-1][1].append(line)
            elif line.strip():
                problems.append(f"output before any $ command: {line!r}")
        for command, shown in sessions:
            if self._cd(command):
                continue
            _, output = _run(command, self.cwd, self.env)
            problem = matches("\n".join(shown), output)
            if problem:
                problems.append(f"$ {command}\n{problem}")

    def _sh(self, block: Block, problems: list[str]) -> None:
        for line in _commands(block.text):
            command = line.strip()
            if not command or command.startswith("#") or self._cd(command):
                continue
            expect = _EXIT.search(command)
            code, output = _run(command, self.cwd, self.env)
            want = int(expect.group(1)) if expect else 0
            if code != want:
                problems.append(f"{command}: exit code {code}, expected {want}\n{output}")

    def _python(self, block: Block, problems: list[str]) -> None:
        # Only what the script prints: TensorFlow's start-up lines on stderr are not its output.
        code, output = _shell(
            f"{shlex.quote(sys.executable)} -c {shlex.quote(block.text)}",
            self.cwd,
            self.env,
            stdout_only=True,
        )
        if code != 0:
            problems.append(f"exit code {code}\n{output}")
        elif block.output is not None:
            problem = matches(block.output.text, output)
            if problem:
                problems.append(problem)

    def _yaml(self, block: Block, problems: list[str]) -> None:
        from ckptmigrate import load_map
        from ckptmigrate.errors import CkptMigrateError

        text = block.text
        if not re.search(r"^version:", text, re.M):
            text = "version: 1\nrules:\n" + text
        # Beside the document's other files: a map finds its vocabularies relative to itself.
        path = self.cwd / f".doc-block-{block.line}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_map(path)
        except CkptMigrateError as e:
            problems.append(str(e))
        finally:
            path.unlink()
        if block.file is not None:
            (self.cwd / block.file).write_text(block.text, encoding="utf-8")

    def _json(self, block: Block, problems: list[str]) -> None:
        import json

        if block.command is None:
            problems.append("a json block needs <!-- doc-test: fields of `COMMAND` --> or a skip")
            return
        _, output = _run(block.command, self.cwd, self.env, stdout_only=True)
        try:
            actual = json.loads(output)
        except ValueError:
            problems.append(f"{block.command} printed no JSON:\n{output}")
            return
        problems.extend(field_differences(json.loads(block.text), actual, "$"))

    def _cd(self, command: str) -> bool:
        if not command.startswith("cd "):
            return False
        self.cwd = (self.cwd / shlex.split(command)[1]).resolve()
        return True


def field_differences(outline: object, actual: object, where: str) -> list[str]:
    """Where the outline's objects have other keys than the real ones at the same place."""
    if isinstance(outline, list) and isinstance(actual, list):
        samples = [a for a in actual if isinstance(a, type(outline[0]))] if outline else []
        return field_differences(outline[0], samples[0], f"{where}[0]") if samples else []
    if not (isinstance(outline, dict) and isinstance(actual, dict)):
        return []
    found: list[str] = []
    if "..." not in outline:
        shown, real = set(outline), set(actual)
        if shown != real:
            found.append(
                f"{where}: the document shows {sorted(shown - real)} that the output lacks, "
                f"and lacks {sorted(real - shown)}"
            )
    for key in outline.keys() & actual.keys():
        found += field_differences(outline[key], actual[key], f"{where}.{key}")
    return found
