"""Sweeps: every (policy, threshold) pair over the same problems, one run directory each.

    rows = run_sweep(config, problems, "runs/sweep", policies=["arbitrage", "rsd", "target_only"],
                     thresholds={"arbitrage": [0.3, 0.5], "rsd": [0.6, 0.8]})

Each model is loaded once (the union of the roles every run needs) and shared by all
runs. A run lives in DIR/<policy>_threshold<value> (DIR/<policy> for policies without a
threshold) and holds exactly what `arbitrage run` writes, so a rerun resumes each run
through `run_batch` and skips finished problems. DIR/sweep.json lists one row per run:
policy, threshold, router, run directory (relative to DIR) and that run's summary.

Several routers in one sweep: `arbitrage@NAME` runs the arbitrage policy with the
config's `routers.NAME` in place of `models.router` (its runs in DIR/arbitrage@NAME_...,
its thresholds given as `arbitrage@NAME=...`); the other models stay the same loaded ones.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from rich.console import Console

from arbitrage.config import Config, ConfigError
from arbitrage.eval.audit import audited_after_run
from arbitrage.eval.run import CONFIG_FILE, SUMMARY_FILE, ProblemLike, run_batch
from arbitrage.eval.tradeoff import curve_label, split_curve_label
from arbitrage.policies import POLICY_NAMES, get_policy
from arbitrage.servers.factory import ModelSet, load_model, load_models

SWEEP_FILE = "sweep.json"

Thresholds = Sequence[float] | Mapping[str, Sequence[float]] | None


@dataclass(frozen=True)
class PlannedRun:
    policy: str
    threshold: float | None
    router: str | None = None  # a name in the config's `routers`; None: models.router

    @property
    def label(self) -> str:
        return curve_label({"policy": self.policy, "router": self.router})

    @property
    def name(self) -> str:
        if self.threshold is None:
            return self.label
        return f"{self.label}_threshold{format_threshold(self.threshold)}"


def split_label(label: str) -> tuple[str, str | None]:
    """A swept label split as `split_curve_label` does, checked: a known policy, and a router
    only after a policy that reads one."""
    policy, router = split_curve_label(label)
    if policy not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICY_NAMES)}")
    if not router:
        if "@" in label:
            raise ValueError(f"{label!r}: name a router after '@' (one of the config's routers)")
        return policy, None
    if get_policy(policy).decider != "router":
        raise ValueError(f"{label!r}: only a policy that reads a router takes '@ROUTER'; {policy} does not")
    return policy, router


def format_threshold(value: float) -> str:
    """Two decimals, more only when needed so distinct thresholds get distinct names."""
    value = value + 0.0  # -0.0 -> 0.0
    text = f"{value:.2f}"
    return text if float(text) == value else f"{value:.6g}"


def parse_thresholds(text: str | None) -> Thresholds:
    """`"0.1,0.3"` (one list for every policy) or `"arbitrage=0.1,0.3;oracle=-0.1,0"`."""
    if text is None or not text.strip():
        return None
    if "=" not in text:
        return _parse_numbers(text, where="--thresholds")
    per_policy: dict[str, list[float]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(
                f"--thresholds part {part.strip()!r} has no 'policy='; write either one list for all "
                "policies or policy=LIST parts separated by ';'"
            )
        policy, values = (s.strip() for s in part.split("=", 1))
        try:
            split_label(policy)
        except ValueError as error:
            raise ValueError(f"--thresholds: {error}") from None
        if policy in per_policy:
            raise ValueError(f"--thresholds gives policy {policy!r} twice")
        per_policy[policy] = _parse_numbers(values, where=f"--thresholds {policy}=")
    return per_policy


def _parse_numbers(text: str, *, where: str) -> list[float]:
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{where}: {item!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {item!r} is not a finite number")
        values.append(value)
    if not values:
        raise ValueError(f"{where}: no thresholds given")
    return values


def plan_runs(policies: Sequence[str], thresholds: Thresholds) -> tuple[list[PlannedRun], list[str]]:
    """The runs of a sweep, in the order given, and a note for every threshold left out."""
    policies = list(dict.fromkeys(policies))
    if not policies:
        raise ValueError("no policies to sweep")
    parsed = {label: split_label(label) for label in policies}
    if isinstance(thresholds, Mapping):
        extra = [p for p in thresholds if p not in policies]
        if extra:
            raise ValueError(f"--thresholds gives values for {extra[0]!r}, which is not in the swept policies")
    runs: list[PlannedRun] = []
    notes: list[str] = []
    for label, (policy, router) in parsed.items():
        allowed = get_policy(policy).threshold_range
        if allowed is None:
            if isinstance(thresholds, Mapping) and label in thresholds:
                notes.append(f"{label}: takes no threshold; its values are ignored and it runs once")
            runs.append(PlannedRun(policy, None))
            continue
        wanted = thresholds.get(label) if isinstance(thresholds, Mapping) else thresholds
        if wanted is None:
            default = get_policy(policy).default_threshold
            notes.append(f"{label}: no thresholds given; runs once at its default {default}")
            wanted = [default]
        low, high = allowed
        kept = []
        for value in dict.fromkeys(float(v) + 0.0 for v in wanted):
            if low <= value <= high:
                kept.append(value)
            else:
                notes.append(f"{label}: threshold {value} is outside [{low}, {high}]; skipped")
        if not kept:
            raise ValueError(f"policy {label!r}: none of the thresholds {list(wanted)} lies in [{low}, {high}]")
        runs.extend(PlannedRun(policy, value, router) for value in kept)
    return runs, notes


def roles_needed(runs: Iterable[PlannedRun], *, audit: bool) -> tuple[str, ...]:
    roles: dict[str, None] = {}
    for run in runs:
        policy = get_policy(run.policy)
        roles.update(dict.fromkeys(policy.roles))
        if audit and audited_after_run(policy):
            roles["prm"] = None
    return tuple(role for role in ("draft", "target", "prm", "router") if role in roles)


def run_sweep(
    config: Config,
    problems: Iterable[ProblemLike],
    output_dir: str | os.PathLike,
    *,
    policies: Sequence[str],
    thresholds: Thresholds,
    models: ModelSet | None = None,
    concurrency: int = 1,
    progress: bool = True,
    audit: bool | None = None,
) -> list[dict]:
    """Run every planned (policy, threshold) pair; return this sweep's rows (also in sweep.json,
    with the notes of `plan_runs` on skipped thresholds).

    `audit` (default: the config's `audit_escalations`) PRM-scores both steps of every
    arbitrage/rsd escalation so wasted escalations are counted, after each run from its
    results (`run_batch`), so that PRM time never slows the run it audits.
    """
    problems = list(problems)
    runs, notes = plan_runs(policies, thresholds)
    unknown = sorted({run.router for run in runs if run.router is not None and run.router not in config.routers})
    if unknown:
        known = ", ".join(config.routers) or "none"
        raise ConfigError(f"the sweep runs arbitrage@{unknown[0]} but the config's routers has no {unknown[0]!r} "
                          f"(it has: {known})")
    audit = config.audit_escalations if audit is None else audit
    configs = {run: _run_config(config, run, audit) for run in runs}
    roles = roles_needed(runs, audit=audit)
    if models is None:
        for role in roles:
            if config.models.get(role) is None:
                raise ConfigError(f"the sweep needs models.{role} ({_users(role, runs)}) but the config has none")
        models = load_models(config, roles=roles)
    for role in roles:
        if getattr(models, role) is None:
            raise ValueError(f"the sweep needs a loaded {role} model ({_users(role, runs)})")
    run_models = {None: models}
    for name in dict.fromkeys(run.router for run in runs if run.router is not None):
        router = load_model("router", config.routers[name], config, target=models.target)
        run_models[name] = replace(models, router=router)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    rows: list[dict] = []
    for index, run in enumerate(runs, 1):
        if progress:
            console.print(f"[bold]run {index}/{len(runs)}[/bold] {run.name}", highlight=False)
        summary = run_batch(
            configs[run], problems, output_dir / run.name, models=run_models[run.router], concurrency=concurrency,
            progress=progress,
        )
        rows.append(_row(run, summary))
        _write_sweep_file(output_dir, rows, notes)
    return rows


def _users(role: str, runs: list[PlannedRun]) -> str:
    users = sorted({run.policy for run in runs if role in get_policy(run.policy).roles})
    return "for " + ", ".join(users) if users else "for the escalation audit"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_config(config: Config, run: PlannedRun, audit: bool) -> Config:
    run_config = config.with_overrides(policy=run.policy, threshold=run.threshold)
    if run.router is not None:
        models = run_config.models.model_copy(update={"router": config.routers[run.router]})
        run_config = run_config.model_copy(update={"models": models})
    return run_config.model_copy(update={"audit_escalations": audit and audited_after_run(run_config.policy)})


def _row(run: PlannedRun, summary: dict) -> dict:
    return {"name": run.name, "policy": run.policy, "threshold": run.threshold, "router": run.router,
            "run_dir": run.name, "summary": summary}


def _write_sweep_file(output_dir: Path, rows: list[dict], notes: list[str]) -> None:
    """Rows of earlier invocations (other thresholds) stay listed while their directory exists."""
    path = output_dir / SWEEP_FILE
    merged: dict[str, dict] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
        for row in previous.get("runs", []):
            if (output_dir / row.get("run_dir", "")).is_dir():
                merged[row["name"]] = row
    merged.update({row["name"]: row for row in rows})
    ordered = sorted(merged.values(), key=_row_order)
    _atomic_write(path, json.dumps({"runs": ordered, "notes": notes}, indent=2))


def _row_order(row: dict) -> tuple:
    policy = row["policy"]
    rank = POLICY_NAMES.index(policy) if policy in POLICY_NAMES else len(POLICY_NAMES)
    return (rank, row.get("router") or "", row["threshold"] if row["threshold"] is not None else -math.inf)


def read_runs(directory: str | os.PathLike) -> list[dict]:
    """Rows (as in sweep.json) for a sweep directory, or one row for a single run directory.

    Each run's summary is read from its own summary.json, which is newer than the copy
    in sweep.json when the run was resumed on its own.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"not a directory: {directory}")
    if (directory / SUMMARY_FILE).exists():
        return [_row_from_run_dir(directory, directory, name=directory.name)]
    sweep_file = directory / SWEEP_FILE
    if sweep_file.exists():
        try:
            listed = json.loads(sweep_file.read_text()).get("runs", [])
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(f"{sweep_file} is not a sweep file (a JSON object with 'runs')") from None
        # a run killed before its first summary has nothing to report yet
        run_dirs = [directory / row["run_dir"] for row in listed
                    if (directory / row["run_dir"] / SUMMARY_FILE).exists()]
    else:
        run_dirs = sorted(path.parent for path in directory.glob(f"*/{SUMMARY_FILE}"))
    if not run_dirs:
        raise FileNotFoundError(f"{directory} holds no run: no summary.json in it, no sweep.json, no run sub-directories")
    rows = [_row_from_run_dir(directory, run_dir, name=run_dir.name) for run_dir in run_dirs]
    return sorted(rows, key=_row_order)


def _row_from_run_dir(root: Path, run_dir: Path, *, name: str) -> dict:
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir}: summary.json without config.json; not a run directory")
    config = Config.model_validate(json.loads(config_path.read_text()))
    relative = "." if run_dir == root else str(run_dir.relative_to(root))
    # A run of one of the config's named routers has that router in place of models.router.
    router = next((n for n, cfg in config.routers.items() if cfg == config.models.router), None)
    if get_policy(config.policy.name).decider != "router":
        router = None
    return {"name": name, "policy": config.policy.name, "threshold": config.threshold, "router": router,
            "run_dir": relative, "summary": summary}
