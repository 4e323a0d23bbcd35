"""One training round of a benchmark variant in a fresh process, for its own peak memory.

The in-process figures of test_train_step carry the pytest process's history (the base model, every
earlier variant's allocations): its peak is not one run's. Like the harness's own workers, this
process loads the model, attaches the variant's method, trains the same steps inside
trackers.track_memory and prints the record as one JSON line.

    python -m bench.isolated VARIANT MODEL_NAME CACHE_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    variant, model_name, cache_dir = argv
    from bench.conftest import Bench
    from harness import models, trackers, train
    bench = Bench("tiny" if model_name == models.TINY_MODEL else "minilm", Path(cache_dir))
    model, spec, tuner = bench.prepared(variant)
    trainer = train.build_trainer(model, spec, bench.train_pairs(spec), bench.device,
                                  output_dir=tempfile.mkdtemp(prefix="bench-isolated-"), tuner=tuner)
    with trackers.track_memory(bench.device) as memory:
        trainer.train()
    memory["process_peak_rss_bytes"] = trackers.process_peak_rss_bytes()
    print(json.dumps(memory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
