"""The trainer callbacks of the harness, in one leaf module that the trainer factory (train.py), the
method registry (AdaLoRA's allocator) and the artifact code (the fault switch) can all import.

- DivergenceGuard: stops at the first non-finite loss (DivergedError, recorded as ``diverged``).
- ValidationProbe: validation Spearman every N steps, on a clock that excludes the probes.
- AdaLoraAllocator: AdaLoRA's rank allocation after every optimizer step.
- ConsoleProgress: one line at each tenth of a run's steps (the trainer's own bar and log dicts are
  shown only with --verbose, VERBOSE_ENV).
- FaultInjector: test-only faults, switched on by HARNESS_INJECT_FAULT (FAULT_ENV).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from harness import devices

FAULT_ENV = "HARNESS_INJECT_FAULT"  # test-only: oom@, sleep@, slow@, touch@ or alloc@ (FaultInjector)


class DivergedError(FloatingPointError):
    def __init__(self, step: int, loss: float):
        self.step = step
        super().__init__(f"training diverged: loss {loss} at step {step}")


class DivergenceGuard(TrainerCallback):
    """Stops training at the first logged non-finite loss (logging_nan_inf_filter is off)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise DivergedError(state.global_step, loss)


class FaultInjector(TrainerCallback):
    """Test-only faults, switched on by the HARNESS_INJECT_FAULT environment variable.

    ``oom@N`` raises torch.OutOfMemoryError at the end of step N; ``sleep@S`` adds S seconds to
    every step (to prove that a regression check catches a slower step); ``slow@F`` makes every step
    after the first a fraction F slower (it sleeps F x the previous step's own duration, inside the
    timed step), for the power of the regression check at a given slowdown; ``touch@PATH`` creates PATH
    when the first step ends (a signal that training is under way, for tests that interrupt it);
    ``alloc@G`` really allocates a G GiB tensor after the first step (under a ``prlimit`` the CPU
    allocator then fails as it does when a batch does not fit); ``artifact@rename`` renames the saved
    artifact's weight tensors (the known failure of an adapter that loads back as the base model;
    applied by harness/artifacts.py, not here); ``artifact@enospc`` fails the artifact's save as a full disk
    does (ENOSPC, after its files are written).
    """

    def __init__(self, fault: str):
        kind, _, arg = fault.partition("@")
        if kind not in ("oom", "sleep", "slow", "touch", "alloc", "artifact"):
            raise ValueError(f"{FAULT_ENV} = {fault!r}: expected oom@STEP, sleep@SECONDS, slow@FRACTION, touch@PATH, "
                             "alloc@GIB, artifact@rename or artifact@enospc")
        self.kind, self.arg = kind, (arg if kind in ("touch", "artifact") else float(arg))
        self._last_step_s = 0.0
        self._begun = 0.0

    @classmethod
    def injected(cls, kind: str):
        """The argument of the fault of this kind that the environment switches on, else None (the
        faults applied outside the trainer: ``artifact@rename`` in harness/artifacts.py)."""
        fault = os.environ.get(FAULT_ENV)
        if not fault:
            return None
        injector = cls(fault)  # a malformed fault fails here as it does in the trainer
        return injector.arg if injector.kind == kind else None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.kind == "sleep":
            time.sleep(self.arg)
        if self.kind == "slow":
            time.sleep(self.arg * self._last_step_s)
            self._begun = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.kind == "slow":
            self._last_step_s = time.perf_counter() - self._begun
        if self.kind == "touch" and state.global_step == 1:
            Path(self.arg).touch()
        if self.kind == "alloc" and state.global_step == 1:
            import torch
            torch.ones(int(self.arg * 2**30), dtype=torch.uint8)
        if self.kind == "oom" and state.global_step >= self.arg:
            import torch
            raise torch.OutOfMemoryError(f"injected fault: out of memory at step {state.global_step}")


class ValidationProbe(TrainerCallback):
    """Time-to-quality: validation Spearman every N steps, against a training clock that
    excludes the probe's own evaluation time (which is reported separately)."""

    def __init__(self, model, pairs, every: int, device: str):
        self.model, self.pairs, self.every, self.device = model, pairs, every, device
        self.points: list[dict] = []
        self.eval_s = 0.0
        self._start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.probe(state.global_step)

    def probe(self, step: int) -> None:
        devices.synchronize(self.device)
        start = time.perf_counter()
        train_s = start - self._start - self.eval_s
        was_training = self.model.training
        spearman = validation_spearman(self.model, self.pairs)
        self.model.train(was_training)
        self.eval_s += time.perf_counter() - start
        self.points.append({"step": step, "train_s": train_s, "val_spearman": spearman})


def validation_spearman(model, pairs) -> float | None:
    from harness import evaluate
    from harness.models import encode_pairs
    a, b = encode_pairs(model, pairs)
    return evaluate.correlations(evaluate.cosine_rows(a, b), pairs.score)["spearman"]


class AdaLoraAllocator(TrainerCallback):
    """AdaLoRA's budget step: peft's ``update_and_allocate`` after each optimizer step and before the
    gradients are cleared (on_optimizer_step), which the Trainer does not call by itself (peft issues
    1327 and 1341). Its time counts as training: a user of AdaLoRA pays it every step."""

    def __init__(self, tuner):
        self.tuner = tuner

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.tuner.update_and_allocate(state.global_step)


VERBOSE_ENV = "HARNESS_VERBOSE"  # set by --verbose: the trainer's progress bar and per-step log dicts


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes", "on")


class ConsoleProgress(TrainerCallback):
    """A run's progress as the harness prints it: at each tenth of the steps, one line with the step,
    the mean seconds a step so far and the time left at that rate. It runs after the step timer's
    end of step (it is added after it), so its printing is outside every timed step."""

    def __init__(self, parts: int = 10):
        self.parts = parts
        self._start = 0.0
        self._marks: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        total = state.max_steps or 0
        self._marks = {max(1, round(total * k / self.parts)) for k in range(1, self.parts + 1)} if total else set()

    def on_step_end(self, args, state, control, **kwargs):
        step, total = state.global_step, state.max_steps
        if step not in self._marks:
            return
        per_step = (time.perf_counter() - self._start) / step
        left = per_step * (total - step)
        print(f"    step {step}/{total} ({100 * step / total:.0f}%), {per_step:.2f} s/step, "
              f"about {left / 60:.1f} min left", flush=True)
