"""The training engine: one loop for every training kind (supervised SR, GAN, diffusion, affinity).

A kind (a `Kind` subclass, registered in `KINDS` under the name an architecture declares as
its `training` attribute) contributes its data, networks, optimisers, one step function,
its validation and its model file. The engine does everything else, the same for all:

1. seed every RNG; the kind builds its data and network; `init:` loads weights
   (`weights.load_init`), `freeze:` is checked against the parameter names and applied,
   all before the first step; the network goes to the device (channels-last on CUDA);
   then the kind builds its optimisers over the trainable parameters only;
2. resume from the checkpoint when its fingerprint matches: a hash of every setting that
   shapes the trajectory, of the bytes of every input and of the init weights. A
   checkpoint holds every part's state, the full RNG state (numpy, torch CPU, CUDA), the
   log rows and the partial log interval, so a resumed run ends with exactly the weights
   of an uninterrupted one on CPU. Any other checkpoint is ignored (and says so in the log);
3. the loop, with tqdm progress on stderr: one step; a log row every `log_every` steps
   (loss terms averaged over the interval, the learning rates of its last step);
   validation every `val_every` steps and at the end, on its own seeded RNG so that
   validating never changes the trajectory; a checkpoint every `checkpoint_every` steps
   and at the end, kept afterwards, so raising `steps` continues training;
4. outputs, each written atomically: model.pt (the kind's format), log.csv, train.json.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..io import InputError, write_csv, write_json
from ..registry import Registry
from ..runtime import (
    count_parameters,
    file_digest,
    get_logger,
    isolated_rng,
    load_checkpoint,
    prepare_model,
    resolve_device,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_threads,
)
from .weights import freeze_parameters, load_init

#: training kind name -> Kind subclass; SR archs name theirs in the class attribute `training`
KINDS: Registry[type] = Registry("training kind")


class Kind:
    """What one training kind contributes to the engine (subclass it and register it in KINDS).

    Called in this order: build, (engine: init, freeze, device), optimise, then per step
    rates and step; validate when due; summary and save at the end.
    """

    #: registry name (supervised, gan, diffusion, affinity)
    name = ""
    #: log.csv columns that validate() fills (NaN in rows without validation)
    val_columns: tuple[str, ...] = ()
    #: settings a checkpoint stays valid across: they do not change the optimisation trajectory
    untracked = frozenset({"steps", "checkpoint_every", "val_every", "val_patches"})

    def __init__(self, settings: dict, inputs: dict[str, list[str]], arch: str):
        self.settings = settings
        self.inputs = inputs  # name -> files; their bytes are fingerprinted
        self.arch = arch  # what an init checkpoint must have been trained as
        self.amp = bool(settings["amp"])
        self.model: torch.nn.Module | None = None

    def untracked_settings(self) -> frozenset[str]:
        return self.untracked

    def derived_settings(self) -> dict:
        """What the trajectory sees that the settings do not spell out (fingerprinted where non-empty):
        a checkpoint made when the same settings meant something else is then not resumed."""
        return {}

    def log_every(self) -> int:
        return 1

    def build(self, rng: np.random.Generator, device: torch.device) -> None:
        """Data samplers (drawing from `rng`) and self.model (initial weights from the seeded torch RNG)."""
        raise NotImplementedError

    def optimise(self) -> None:
        """Optimisers, schedulers and grad scalers, over the trainable parameters only."""
        raise NotImplementedError

    def parts(self) -> dict:
        """name -> object with state_dict / load_state_dict: everything a checkpoint must hold."""
        raise NotImplementedError

    def rates(self) -> dict[str, float]:
        """The learning rates the coming step uses (logged)."""
        raise NotImplementedError

    def step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns its loss terms, "loss" first."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        raise NotImplementedError

    def describe(self) -> str:
        """One log line: what is trained on what."""
        return f"{self.arch} on {', '.join(f for files in self.inputs.values() for f in files)}"

    def summary(self, rows: list[dict]) -> dict:
        """The kind's own train.json entries."""
        return {}

    def save(self, path: str, info: dict) -> None:
        """Write model.pt."""
        raise NotImplementedError


def fingerprint(settings: dict, kind: Kind) -> str:
    """Hash of all that shapes the training trajectory: settings (and derived ones), input bytes, init weights."""
    keyed = {k: v for k, v in settings.items() if k not in kind.untracked_settings()}
    keyed["kind"] = kind.name
    derived = kind.derived_settings()
    if derived:  # only where non-empty, so that every other kind's fingerprint stays what it was
        keyed["derived"] = derived
    keyed["inputs"] = {name: [file_digest(p) for p in files] for name, files in kind.inputs.items()}
    if settings.get("init"):
        keyed["init_digest"] = file_digest(settings["init"])
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()


class LogInterval:
    """Sums of the loss terms since the last log row (saved in checkpoints: resumed rows are exact).

    Each term is averaged over the steps that reported it (a GAN's critic terms start late)."""

    def __init__(self, state: dict | None = None):
        self.sums: dict[str, list[float]] = {k: list(v) for k, v in (state or {}).items()}  # name -> [sum, count]

    def add(self, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            acc = self.sums.setdefault(k, [0.0, 0])
            acc[0] += float(v)
            acc[1] += 1

    def means(self) -> dict[str, float]:
        out = {k: total / n for k, (total, n) in self.sums.items()}
        self.sums = {}
        return out

    def state(self) -> dict:
        return {k: list(v) for k, v in self.sums.items()}


def train(
    kind: Kind,
    *,
    model: str,
    log_csv: str,
    train_json: str,
    checkpoint: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
    where: str = "model",
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train `kind` with its complete settings; write model.pt, log.csv and train.json; return train.json's dict.

    `where` is the config key errors name (models.<name>, affinity); `checkpoint` defaults
    to checkpoint.pt beside `model`; `on_step(step)` runs after each step (after its checkpoint).
    """
    return _Run(kind, model, checkpoint, device, threads, log, where).run(model, log_csv, train_json, on_step)


class _Run:
    """One call of `train`: setup, resume, loop, outputs."""

    def __init__(self, kind: Kind, model: str, checkpoint, device, threads, log, where):
        self.t_start, self.cpu_start = time.perf_counter(), time.process_time()
        self.kind, self.settings = kind, kind.settings
        self.log = get_logger("srseg.train", log)
        self.checkpoint = Path(checkpoint or Path(model).with_name("checkpoint.pt"))
        set_threads(threads)
        self.device = resolve_device(str(device))
        self.rng = seed_everything(int(self.settings["seed"]))  # first: initial weights come from the torch RNG
        kind.build(self.rng, self.device)
        init = self.settings["init"]
        self.init_report = load_init(kind.model, init, kind.arch, where) if init else None
        self.frozen = freeze_parameters(kind.model, self.settings["freeze"], where)
        prepare_model(kind.model, self.device)
        kind.optimise()
        self.fingerprint = fingerprint(self.settings, kind)
        self.step, self.rows, self.interval, self.seconds_before, self.resumed_from = 0, [], LogInterval(), 0.0, None
        self.t_loop = time.perf_counter()

    # ------------------------------------------------------------------ checkpoints

    def resume(self) -> None:
        if not self.checkpoint.exists():
            return
        try:
            ck = load_checkpoint(self.checkpoint)
        except InputError as exc:
            self.log.info("ignoring %s (%s); training from step 0", self.checkpoint, exc)
            return
        parts = self.kind.parts()
        if ck.get("fingerprint") != self.fingerprint or set(ck.get("parts", ())) != set(parts):
            self.log.info(
                "ignoring %s: it was made with other settings or inputs; training from step 0", self.checkpoint
            )
            return
        if ck["step"] > self.settings["steps"]:
            self.log.info(
                "ignoring %s: it is at step %d, beyond steps=%d; training from step 0",
                self.checkpoint,
                ck["step"],
                self.settings["steps"],
            )
            return
        for name, part in parts.items():
            part.load_state_dict(ck["parts"][name])
        restore_rng_state(self.rng, ck["rng"], self.device)
        self.step, self.rows, self.seconds_before = ck["step"], ck["rows"], ck["seconds"]
        self.interval = LogInterval(ck["interval"])
        self.resumed_from = self.step
        self.log.info("resumed from %s at step %d", self.checkpoint, self.step)

    def save_checkpoint(self) -> None:
        save_checkpoint(
            self.checkpoint,
            {
                "fingerprint": self.fingerprint,
                "kind": self.kind.name,
                "arch": self.kind.arch,
                "step": self.step,
                "parts": {name: part.state_dict() for name, part in self.kind.parts().items()},
                "rng": rng_state(self.rng, self.device),
                "rows": self.rows,
                "interval": self.interval.state(),
                "seconds": self.elapsed(),
            },
        )

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t_loop

    # ------------------------------------------------------------------ loop

    def validate(self) -> dict[str, float]:
        with isolated_rng(self.device, int(self.settings["seed"]) + 1):
            return self.kind.validate()

    def log_row(self, rates: dict, validate: bool) -> dict:
        row = {"step": self.step, **self.interval.means(), **rates, **{c: math.nan for c in self.kind.val_columns}}
        if validate:
            row.update(self.validate())
        row["seconds"] = self.elapsed()
        self.rows.append(row)
        return row

    def loop(self, on_step) -> None:
        s, kind = self.settings, self.kind
        steps, every = s["steps"], kind.log_every()
        bar = tqdm(total=steps, initial=self.step, desc=f"train {kind.arch}", mininterval=5)
        while self.step < steps:
            self.step += 1
            rates = kind.rates()
            self.interval.add(kind.step(self.step))
            last = self.step == steps
            validate = self.step % s["val_every"] == 0 or last
            if self.step % every == 0 or validate:
                row = self.log_row(rates, validate)
                bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                if validate:
                    self.log.info(
                        "step %d %s", self.step, " ".join(f"{k} {row[k]:.5g}" for k in ("loss", *kind.val_columns))
                    )
            bar.update(1)
            if self.step % s["checkpoint_every"] == 0 or last:
                self.save_checkpoint()
            if on_step is not None:
                on_step(self.step)
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ run and outputs

    def run(self, model: str, log_csv: str, train_json: str, on_step) -> dict:
        self.resume()
        n_params = count_parameters(self.kind.model)
        self.log.info(
            "training %s: %d parameters, kind %s, %d steps, device %s",
            self.kind.describe(),
            n_params,
            self.kind.name,
            self.settings["steps"],
            self.device,
        )
        if self.init_report:
            r = self.init_report
            self.log.info(
                "init from %s: %d tensors loaded; missing %s; unexpected %s; shape mismatch %s; "
                "colour/section channels adapted %s",
                r["path"],
                r["loaded"],
                r["missing"],
                r["unexpected"],
                r["shape_mismatch"],
                r["channel_adapted"],
            )
        if self.frozen:
            self.log.info("frozen (not trained): %d parameter tensors: %s", len(self.frozen), self.frozen)
        steps_run = self.settings["steps"] - self.step
        self.t_loop = time.perf_counter()
        self.loop(on_step)
        loop_seconds = time.perf_counter() - self.t_loop
        info = {**self.kind.summary(self.rows), **self.common_info(n_params, steps_run, loop_seconds)}
        self.kind.save(model, info)
        columns = list(dict.fromkeys(k for row in self.rows for k in row))  # first row's order, then new terms
        write_csv(log_csv, pd.DataFrame(self.rows, columns=columns))
        info["wall_seconds_this_run"] = time.perf_counter() - self.t_start
        info["cpu_seconds_this_run"] = time.process_time() - self.cpu_start  # all threads of this process
        write_json(train_json, info)
        self.log.info(
            "done: %d steps, %.1f steps/s; final %s",
            self.settings["steps"],
            info["steps_per_s"] or 0.0,
            ", ".join(f"{k} {info['final_' + k]:.5g}" for k in ("loss", *self.kind.val_columns)),
        )
        return info

    def common_info(self, n_params: int, steps_run: int, loop_seconds: float) -> dict:
        s, device, last = self.settings, self.device, self.rows[-1]
        return {
            "steps": s["steps"],
            "resumed_from_step": self.resumed_from,
            "steps_this_run": steps_run,
            "parameters": n_params,
            "steps_per_s": steps_run / loop_seconds if steps_run and loop_seconds > 0 else None,
            "train_seconds_total": last["seconds"],
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "amp": bool(s["amp"]) and device.type == "cuda",
            "seed": s["seed"],
            "batch": s["batch"],
            "init": self.init_report,
            "frozen_parameters": self.frozen,
            "final_loss": last["loss"],
            **{f"final_{c}": last[c] for c in self.kind.val_columns},
            "checkpoint": str(self.checkpoint),
            "inputs": self.kind.inputs,
        }
