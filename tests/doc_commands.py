"""The commands the documents show, and a checker that says whether each would run as written.

Sources: every fenced ```bash (or sh, shell, console) block of README.md and docs/*.md; the
header comment of each examples/*.yaml and scripts/*.sh; the docstring of each examples/*.py,
benchmarks/*.py and arbitrage/**/cli.py (there, lines starting with `arbitrage `, `python `,
`.venv/bin/` or `bash `). A line ending in `\\` continues on the next; `#` starts a comment; `&&`, `;`, `|` and a
trailing `&` separate commands; leading `NAME=value` assignments and a `.venv/bin/` prefix
are dropped. So a section added to a document later is checked with no change here.

Checks, none of which runs the command:
- `arbitrage ...`: walks the typer app's click commands to the leaf and parses the rest
  with `make_context` (unknown options, bad values and missing required options fail),
  then checks what parsing cannot see: a shipped `--config` loads, `--policy` and
  `--threshold` are valid together, a sweep's plan is valid, and `--dataset` is not
  given without `--data` (run and sweep ignore it then).
- `python path.py ...`: the script exists and its argparse parser accepts the arguments
  (the script runs in this process until `parse_args` returns, then stops).
- `python -m module ...`: the module exists (`arbitrage.cli` is parsed as above);
  `python -c code`: it compiles and every name it imports exists.
- `bash path`: the script exists and `bash -n` accepts it.
- any argument naming a file under examples/, benchmarks/ or scripts/: the file exists.

Prose names commands too: every inline code span that starts with `arbitrage ` in the
documents, arbitrage/lab/MODEL_CARD.md and the files above must name a command that exists,
with options it has (required options may be left out there; `...` ends the span).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import io
import re
import runpy
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHELL_FENCES = ("bash", "sh", "shell", "console")
# What a header comment or docstring line must start with to count as a command.
COMMAND_PREFIXES = ("arbitrage ", "python ", "python3 ", ".venv/bin/", "bash ")
SEPARATORS = {"&&", "||", ";", "|", "&"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Server packages that need a GPU machine; `python -m` on them cannot be checked here.
GPU_ONLY_MODULES = {"sglang", "vllm"}
SHIPPED_DIRS = ("examples/", "benchmarks/", "scripts/")
MENTION = re.compile(r"`(arbitrage [^`]+)`")


@dataclass(frozen=True)
class Command:
    source: str  # "README.md:7"
    argv: tuple[str, ...]  # program first, .venv/bin/ and env assignments stripped

    @property
    def program(self) -> str:
        return self.argv[0]

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


class CommandError(Exception):
    """The command would not run as written; the message says why."""


# --- extraction -------------------------------------------------------------------------


def document_paths(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def runnable_file_paths(root: Path = ROOT) -> list[Path]:
    """Examples, benchmarks and scripts: each shows in its header how to run it."""
    return [
        *sorted(p for p in (root / "examples").iterdir() if p.suffix in (".yaml", ".yml", ".py")),
        *sorted((root / "benchmarks").glob("*.py")),
        *sorted((root / "scripts").glob("*.sh")),
    ]


def header_paths(root: Path = ROOT) -> list[Path]:
    return [*runnable_file_paths(root), *sorted((root / "arbitrage").rglob("cli.py"))]


def all_commands(root: Path = ROOT) -> list[Command]:
    commands = []
    for path in document_paths(root):
        commands += markdown_commands(path.read_text(), path.relative_to(root).as_posix())
    for path in header_paths(root):
        commands += header_commands(path, path.relative_to(root).as_posix())
    return commands


def mention_paths(root: Path = ROOT) -> list[Path]:
    return [*document_paths(root), root / "arbitrage" / "lab" / "MODEL_CARD.md", *runnable_file_paths(root)]


def all_mentions(root: Path = ROOT) -> list[Command]:
    mentions = []
    for path in mention_paths(root):
        mentions += mentioned_commands(path.read_text(), path.relative_to(root).as_posix())
    return mentions


def mentioned_commands(text: str, source: str) -> list[Command]:
    """`arbitrage ...` in inline code spans (which may wrap lines), up to a `...`."""
    mentions = []
    for match in MENTION.finditer(text):
        try:
            words = shlex.split(" ".join(match.group(1).split()), comments=True)
        except ValueError:  # an unbalanced quote: not a command
            continue
        if "..." in words:
            words = words[: words.index("...")]
        mentions.append(Command(f"{source}:{text.count(chr(10), 0, match.start()) + 1}", tuple(words)))
    return mentions


def markdown_commands(text: str, source: str) -> list[Command]:
    """Every command in the fenced shell blocks of a markdown text."""
    lines, commands, fence, start = text.splitlines(), [], None, 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if fence is None:
            if stripped.startswith("```") and stripped[3:].strip().lower() in SHELL_FENCES:
                fence, start = [], number + 1
        elif stripped.startswith("```"):
            commands += _block_commands(fence, start, source, prefixes=None)
            fence = None
        else:
            fence.append(line)
    return commands


def header_commands(path: Path, source: str) -> list[Command]:
    """Commands in a Python file's docstring or another file's leading comment block."""
    text = path.read_text()
    if path.suffix == ".py":
        docstring = ast.get_docstring(ast.parse(text), clean=False) or ""
        first = text.find(docstring.splitlines()[0]) if docstring else 0
        start = text.count("\n", 0, first) + 1
        return _block_commands(docstring.splitlines(), start, source, prefixes=COMMAND_PREFIXES)
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    return _block_commands(header, 1, source, prefixes=COMMAND_PREFIXES)


def _block_commands(lines: list[str], first_line: int, source: str, prefixes) -> list[Command]:
    commands, pending, pending_start = [], "", first_line
    for offset, raw in enumerate(lines):
        line = raw.strip()
        if not pending:
            pending_start = first_line + offset
            if prefixes is not None and not line.startswith(prefixes):
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        commands += split_commands(pending, f"{source}:{pending_start}")
        pending = ""
    if pending:
        commands += split_commands(pending, f"{source}:{pending_start}")
    return commands


def split_commands(line: str, source: str) -> list[Command]:
    """One shell line -> its commands (comments dropped, `&&`-joined parts apart)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in [*lexer, ";"]:
        if token not in SEPARATORS:
            words.append(token)
            continue
        while words and ENV_ASSIGNMENT.match(words[0]):
            words.pop(0)
        if words:
            words[0] = words[0].removeprefix(".venv/bin/")
            commands.append(Command(source, tuple(words)))
        words = []
    return commands


# --- checking ---------------------------------------------------------------------------


def is_checkable(command: Command) -> bool:
    return command.program in ("arbitrage", "python", "python3", "bash")


def check(command: Command) -> None:
    """Raise CommandError unless the command would run as written."""
    _check_shipped_paths(command.argv[1:])
    if command.program == "arbitrage":
        check_arbitrage(command.argv[1:])
    elif command.program in ("python", "python3"):
        check_python(command.argv[1:])
    elif command.program == "bash":
        check_bash(command.argv[1:])
    else:
        raise CommandError(f"no checker for program {command.program!r}")


def _check_shipped_paths(args) -> None:
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if value.startswith(SHIPPED_DIRS) and not (ROOT / value).exists():
            raise CommandError(f"{value} does not exist")


def arbitrage_leaf(args, *, allow_group: bool = False):
    """(click command, its name path, the arguments left for it) for `arbitrage ARGS`.

    Groups are told apart by their `commands` mapping, not by class: typer 0.2x ships its
    own copy of click, so `click.Group` is not their base class."""
    import typer.main

    from arbitrage.cli import app

    command, names, rest = typer.main.get_command(app), ["arbitrage"], list(args)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            raise CommandError(
                f"`{' '.join(names)}` has no command {rest[0]!r} (it has: {', '.join(sorted(command.commands))})"
            )
        command, names, rest = sub, [*names, rest.pop(0)], rest
    if _is_group(command) and not rest and not allow_group:
        raise CommandError(f"`{' '.join(names)}` needs a command (one of: {', '.join(sorted(command.commands))})")
    return command, names, rest


def check_mention(command: Command) -> None:
    """A command named in prose exists and has every option the prose gives it."""
    leaf, names, rest = arbitrage_leaf(command.argv[1:], allow_group=True)
    options = {opt for param in leaf.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [word.split("=")[0] for word in rest if word.startswith("--") and word.split("=")[0] not in options]
    if unknown:
        raise CommandError(f"`{' '.join(names)}` has no option {', '.join(unknown)}")


def _is_group(command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def check_arbitrage(args) -> dict:
    """Parse `arbitrage ARGS` without running it; return the leaf's parsed parameters."""
    command, names, rest = arbitrage_leaf(args)
    try:
        context = command.make_context(" ".join(names), rest, resilient_parsing=False)
    except Exception as error:  # click's classes, from whichever copy of click typer uses
        if type(error).__name__ == "Exit":  # --help
            return {}
        if not hasattr(error, "format_message"):
            raise
        raise CommandError(f"`{' '.join(names)}`: {error.format_message()}") from None
    params = dict(context.params)
    _check_arbitrage_values(names[-1], params)
    return params


def _check_arbitrage_values(leaf: str, params: dict) -> None:
    from arbitrage.config import ConfigError, load_config
    from arbitrage.eval.sweep import parse_thresholds, plan_runs

    config_path = params.get("config")
    config = None
    try:
        if config_path is not None and str(config_path).startswith("examples/"):
            config = load_config(ROOT / config_path)
        if leaf in ("run", "graph") and (params.get("policy") or params.get("threshold") is not None):
            (config or load_config(None)).with_overrides(policy=params.get("policy"), threshold=params.get("threshold"))
        if leaf == "sweep":
            plan_runs([p.strip() for p in params["policies"].split(",") if p.strip()],
                      parse_thresholds(params.get("thresholds")))
    except (ConfigError, ValueError) as error:
        raise CommandError(f"`arbitrage {leaf}`: {error}") from None
    # `run` and `sweep` read --dataset only for a --data source; alone it is silently unused.
    if leaf in ("run", "sweep") and params.get("data") is None and params.get("dataset", "auto") != "auto":
        raise CommandError(f"`arbitrage {leaf}`: --dataset {params['dataset']} does nothing without --data")


class _ArgumentsParsed(Exception):
    pass


def check_python(args) -> None:
    if not args:
        raise CommandError("python with no arguments")
    if args[0] == "-m":
        _check_python_module(args[1], args[2:])
    elif args[0] == "-c":
        _check_python_code(args[1])
    else:
        _check_python_script(args[0], args[1:])


def _check_python_module(module: str, args) -> None:
    if module == "arbitrage.cli":
        check_arbitrage(args)
        return
    if module.split(".")[0] in GPU_ONLY_MODULES:
        return
    if importlib.util.find_spec(module) is None:
        raise CommandError(f"no module named {module!r}")


def _check_python_code(code: str) -> None:
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise CommandError(f"python -c: {error}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _import(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _import(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and not _is_submodule(node.module, alias.name):
                    raise CommandError(f"python -c: {node.module} has no {alias.name!r}")


def _is_submodule(package: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except ModuleNotFoundError:  # `package` is a module, not a package
        return False


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise CommandError(f"python -c: {error}") from None


def _check_python_script(script: str, args) -> None:
    """Run the script in this process until its argparse parser has accepted `args`."""
    path = ROOT / script
    if not path.is_file():
        raise CommandError(f"no script {script}")
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _ArgumentsParsed

    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = [str(path), *args], [str(path.parent)]
    argparse.ArgumentParser.parse_args = parse_then_stop
    stderr = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(stderr):
            runpy.run_path(str(path), run_name="__main__")
    except _ArgumentsParsed:
        return
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # 0: --help
            raise CommandError(f"{script}: {stderr.getvalue().strip() or exit_}") from None
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv, sys.path[:] = saved_argv, saved_path


def check_bash(args) -> None:
    if not args:
        raise CommandError("bash with no script")
    path = ROOT / args[0]
    if not path.is_file():
        raise CommandError(f"no script {args[0]}")
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    if syntax.returncode != 0:
        raise CommandError(f"{args[0]}: {syntax.stderr.strip()}")
