"""One fresh process serving K tasks, for what they cost in memory (bench/test_serving.py).

    python -m bench.serving adapters DEVICE BASE_FOLDER ADAPTER_FOLDER...   # one base, K adapters (peft)
    python -m bench.serving full DEVICE FULL_FOLDER...                      # K full models

Each task is loaded the way a user loads it (peft's PeftModel.from_pretrained / load_adapter on the
base's transformer; SentenceTransformer(folder) for a full model) and used once (one sentence encoded
with it active), so that nothing is counted before it is materialised. Prints one JSON line: the
resident set size (RSS) before loading anything (torch, transformers and peft imported) and after
serving every task, and on a GPU the allocated device memory, so that the caller can fit the
increment per task.
"""

from __future__ import annotations

import gc
import json
import sys

QUERY = ["I love hiking on weekends and quiet evenings with a book"]


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def serve(kind: str, device: str, folders: list[str]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from harness.artifacts import with_peft_adapter
    gc.collect()
    before = _rss()
    device_before = torch.cuda.memory_allocated() if device == "cuda" else None
    held = []
    if kind == "adapters":
        base, adapters = folders[0], folders[1:]
        model = SentenceTransformer(base, device=device).eval()
        for k, folder in enumerate(adapters):
            name = f"task{k}"
            if k == 0:
                with_peft_adapter(model, folder, adapter_name=name)
            else:
                model[0].auto_model.load_adapter(folder, adapter_name=name)
            model[0].auto_model.set_adapter(name)
            model.encode(QUERY, show_progress_bar=False)
        held.append(model)
        tasks = len(adapters)
    else:
        for folder in folders:
            model = SentenceTransformer(folder, device=device).eval()
            model.encode(QUERY, show_progress_bar=False)
            held.append(model)
        tasks = len(folders)
    gc.collect()
    out = {"kind": kind, "tasks": tasks, "rss_before_bytes": before, "rss_after_bytes": _rss(),
           "device": device}
    if device == "cuda":
        out["device_allocated_bytes"] = torch.cuda.memory_allocated() - device_before
    return out


def main(argv: list[str]) -> int:
    kind, device, *folders = argv
    if kind not in ("adapters", "full") or not folders:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(serve(kind, device, folders)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
