"""The lab: a synthetic arithmetic task and the small models trained on it.

The shipped weights live in `WEIGHTS_DIR/{draft,target,prm}`; `lab_model_dir(name)`
resolves a `lab:NAME` model path.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LAB_MODELS = ("draft", "target", "prm")


def lab_model_dir(name: str) -> Path:
    """The directory of the shipped lab model `name` (draft, target or prm); accepts `lab:NAME`."""
    if name.startswith("lab:"):
        name = name[4:]
    path = WEIGHTS_DIR / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no shipped lab model {name!r} at {path}")
    return path


def progress_bar(total: int, desc: str):
    """The progress bar of the lab's long jobs (training, sampling)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=2.0)
