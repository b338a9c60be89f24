"""Every command README.md, docs/*.md, examples/, benchmarks/ and scripts/ show runs as written.

Each command is parsed by the checker in tests/doc_commands.py (without running it); the
cheap ones (graph drawing, sglang launch dry runs, server status/stop, `arbitrage run` on
the lab models, capped at 2 problems) also run for real in a subprocess, writing under a
temporary directory.

    python -m pytest tests/test_docs_commands.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doc_commands import (
    ROOT,
    Command,
    CommandError,
    all_commands,
    all_mentions,
    arbitrage_leaf,
    check,
    check_arbitrage,
    check_mention,
    is_checkable,
    markdown_commands,
    mentioned_commands,
    runnable_file_paths,
    split_commands,
)

COMMANDS = all_commands()
CHECKED = [c for c in COMMANDS if is_checkable(c)]
RUN_LIMIT = 2
README_SETUP = "bash scripts/setup.sh && .venv/bin/arbitrage run --limit 20 --output runs/lab"
README_TESTS = "bash scripts/setup.sh && .venv/bin/python -m pytest"


def _ids(commands):
    return [f"{c.source} {c.text}"[:120] for c in commands]


# --- what the documents show --------------------------------------------------------------


def test_the_readme_opens_with_the_setup_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    before, rest = readme.split("```bash\n", 1)
    assert "\n## " not in before
    first_block = rest.split("```", 1)[0]
    assert [line.split("  #")[0].strip() for line in first_block.strip().splitlines()] == [README_SETUP, README_TESTS]


def test_ci_runs_exactly_the_readme_test_command():
    assert README_TESTS in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_example_benchmark_and_script_shows_how_to_run_it():
    for path in runnable_file_paths():
        name = path.relative_to(ROOT).as_posix()
        shown = [c for c in COMMANDS if c.source.startswith(f"{name}:")]
        assert any(c.program in ("arbitrage", "python", "bash") for c in shown), f"{name} shows no command"


def test_extraction_reads_blocks_the_way_a_shell_would():
    text = (
        "Intro `arbitrage not-a-command` in prose is not read.\n\n"
        "```bash\n"
        "# a comment line\n"
        "ARBITRAGE_CONFIG=examples/lab.yaml .venv/bin/arbitrage serve --role pipeline \\\n"
        "    --port 0 --config examples/lab.yaml   # trailing comment\n"
        "arbitrage serve --config examples/lab.yaml --role draft --port 8101 &\n"
        "bash scripts/setup.sh && python -m pytest -q\n"
        "```\n\n"
        "```yaml\npolicy: rsd\n```\n"
    )
    commands = markdown_commands(text, "NEW.md")
    assert [(c.source, c.argv) for c in commands] == [
        ("NEW.md:5", ("arbitrage", "serve", "--role", "pipeline", "--port", "0", "--config", "examples/lab.yaml")),
        ("NEW.md:7", ("arbitrage", "serve", "--config", "examples/lab.yaml", "--role", "draft", "--port", "8101")),
        ("NEW.md:8", ("bash", "scripts/setup.sh")),
        ("NEW.md:8", ("python", "-m", "pytest", "-q")),
    ]


def test_extraction_finds_the_readme_commands():
    readme = [c.text for c in COMMANDS if c.source.startswith("README.md:")]
    assert "bash scripts/setup.sh" in readme
    assert ".venv/bin/arbitrage" not in " ".join(readme)  # the prefix is dropped, the command kept
    assert "arbitrage run --limit 20 --output runs/lab" in readme
    assert "python -m pytest" in readme
    assert len(readme) >= 15


# --- parsing every command ------------------------------------------------------------------


@pytest.mark.parametrize("command", CHECKED, ids=_ids(CHECKED))
def test_documented_command_parses(command: Command):
    try:
        check(command)
    except CommandError as error:
        pytest.fail(f"{command.source}: `{command.text}`: {error}")


MENTIONS = all_mentions()


@pytest.mark.parametrize("command", MENTIONS, ids=_ids(MENTIONS))
def test_command_named_in_prose_exists(command: Command):
    try:
        check_mention(command)
    except CommandError as error:
        pytest.fail(f"{command.source}: `{command.text}`: {error}")


@pytest.mark.parametrize("span, reason", [
    ("`arbitrage train-router`", "no command 'train-router'"),
    ("`arbitrage router train --kinds features`", "has no option --kinds"),
    ("`arbitrage servers status --config\nx.yaml`", "has no option --config"),
])
def test_a_wrong_command_named_in_prose_is_caught(span, reason):
    (command,) = mentioned_commands(f"Train it with {span} first.", "prose")
    with pytest.raises(CommandError, match=reason):
        check_mention(command)


def test_prose_mentions_are_found_across_lines_and_up_to_an_ellipsis():
    text = "Run `arbitrage lab eval --n 500\n--json` or `arbitrage router ...` (see `arbitrage/lab`)."
    assert [(c.source, c.argv) for c in mentioned_commands(text, "T.md")] == [
        ("T.md:1", ("arbitrage", "lab", "eval", "--n", "500", "--json")),
        ("T.md:2", ("arbitrage", "router")),
    ]


WRONG = [
    ("arbitrage servers status --config examples/sglang_llama.yaml", "No such option: --config"),
    ("arbitrage servers stop --config examples/sglang_llama.yaml", "No such option: --config"),
    ("arbitrage train-router --data runs/router-data --output runs/router", "no command 'train-router'"),
    ("arbitrage servers", "needs a command"),
    ("arbitrage run --limit twenty", "Invalid value for '--limit'"),
    ("arbitrage run --limit 0", "Invalid value for '--limit'"),
    ("arbitrage sweep --limit 3", "Missing option '--output'"),
    ("arbitrage run --limit 2 extra", "unexpected extra argument"),
    ("arbitrage run --config examples/no_such.yaml", "examples/no_such.yaml does not exist"),
    ("arbitrage run --policy fastest", "policy: unknown policy 'fastest'"),
    ("arbitrage run --policy rsd --threshold 1.5", "threshold"),
    ("arbitrage sweep --policies rsd,nope --output runs/s", "nope"),
    ("arbitrage run --config examples/sglang_llama.yaml --dataset math500", "does nothing without --data"),
    ("python benchmarks/router_cost.py --no-such-option", "unrecognized arguments: --no-such-option"),
    ("python benchmarks/no_such_benchmark.py", "does not exist"),
    ("python examples/agent_pipeline.py --config", "expected one argument"),
    ("python -m no_such_module_here", "no module named"),
    ('python -c "from arbitrage.config import no_such_name"', "has no 'no_such_name'"),
    ("bash scripts/no_such_script.sh", "does not exist"),
]


@pytest.mark.parametrize("line, reason", WRONG, ids=[w[0] for w in WRONG])
def test_the_checker_rejects_a_wrong_command(line, reason):
    (command,) = split_commands(line, "test")
    with pytest.raises(CommandError) as raised:
        check(command)
    assert reason in str(raised.value)


# --- running the cheap ones for real ----------------------------------------------------------


def _lab_run(args: list[str]) -> tuple[list[str], str] | None:
    """`arbitrage run` args capped at RUN_LIMIT problems, and what the run does (its config
    and input), or None unless it runs on the in-process lab models over the lab test split
    (anything else needs a GPU, a server or data)."""
    from arbitrage.config import load_config

    params = check_arbitrage(args)
    if params.get("data") is not None:
        return None
    config_path = params.get("config")
    config = load_config(ROOT / config_path if config_path else None).with_overrides(
        policy=params.get("policy"), threshold=params.get("threshold"))
    models = config.required_models().values()
    if not all(m.backend == "transformers" and m.is_lab_model() for m in models):
        return None
    what = json.dumps([config.model_dump(), params.get("problem")], sort_keys=True)
    if params.get("problem") is not None:
        return args, what
    if "--limit" not in args:
        return [*args, "--limit", str(RUN_LIMIT)], what
    at = args.index("--limit") + 1
    return [*args[:at], str(min(int(args[at]), RUN_LIMIT)), *args[at + 1:]], what


def real_run(command: Command) -> tuple[list[str], str] | None:
    """The arguments to run `command` with for real and what it does (two commands that do
    the same run once), or None when it is too costly here."""
    if command.program != "arbitrage":
        return None
    args = list(command.argv[1:])
    names = arbitrage_leaf(args)[1][1:]
    if names == ["run"]:
        return _lab_run(args)
    cheap = (
        names == ["graph"]
        or (names == ["servers", "launch"] and "--dry-run" in args)
        # status and stop only under the temporary directory, never a real run dir
        or (names in (["servers", "status"], ["servers", "stop"])
            and not ("--run-dir" in args and Path(args[args.index("--run-dir") + 1]).is_absolute()))
    )
    return (args, json.dumps(args)) if cheap else None


def _runnable(commands):
    runnable, seen = [], set()
    for command in commands:
        try:
            planned = real_run(command)
        except CommandError:  # reported by test_documented_command_parses
            continue
        if planned is not None and planned[1] not in seen:
            seen.add(planned[1])
            runnable.append((command, planned[0]))
    return runnable


RUNNABLE = _runnable(CHECKED)


def test_the_main_command_is_among_those_run_for_real():
    assert ["run", "--limit", str(RUN_LIMIT), "--output", "runs/lab"] in [args for _, args in RUNNABLE]


@pytest.fixture
def workdir(tmp_path):
    """A directory that sees the repository's shipped files; relative outputs land in it."""
    for name in ("examples", "scripts", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("command, args", RUNNABLE, ids=_ids([c for c, _ in RUNNABLE]))
def test_cheap_documented_command_runs(command: Command, args: list[str], workdir: Path):
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "arbitrage.cli", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command.source}: `arbitrage {' '.join(args)}`\n{done.stdout}\n{done.stderr}"
    params = check_arbitrage(args)
    names = arbitrage_leaf(args)[1][1:]
    if names == ["run"]:
        output = workdir / params["output"]
        records = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
        expected = 1 if params["problem"] is not None else min(params["limit"], RUN_LIMIT)
        assert len(records) == expected and all(r["error"] is None and r["steps"] for r in records)
        assert json.loads((output / "summary.json").read_text())["n_problems"] == expected
    elif names == ["graph"]:
        if params["output"] is None:
            assert "draft_step" in done.stdout
        else:
            assert (workdir / params["output"]).stat().st_size > 0
    elif names == ["servers", "launch"]:
        engines = ("-m sglang.launch_server", "-m vllm.entrypoints.")
        launched = [line for line in done.stdout.splitlines() if any(engine in line for engine in engines)]
        assert launched and all("--host 127.0.0.1" in line for line in launched)
    else:
        assert "no servers recorded" in done.stdout
