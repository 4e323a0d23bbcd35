"""lora-bench harness: what does LoRA buy compared with full fine-tuning, and what does it cost?

Follow one run from the command line to its results file:

    __main__.py   `python -m harness run`: parse arguments, build specs, preflight, hand to the runner
      spec.py     defaults -> arm delta -> profile -> TOML -> --set; validated RunSpec per arm; spec_hash
      runner.py   for each spec: keep an existing successful result with the same hash, else start
                  `python -m harness.worker SPEC.json RECORD.json` (a fresh process) and file the record
                  in OUT/runs/<run_id>.json (crash, signal and timeout are recorded as failures)
        worker.py seeds, data.py (dating.py / stsb / user file), models.py (+ peft LoRA),
                  trackers.py (time, memory, energy, StepTimer callback) around
                  SentenceTransformerTrainer.train(), then evaluate.py on the test split
        results.py  SCHEMA_VERSION, loading with version checks; files.py writes atomically
      report/     OUT/runs/*.json -> OUT/tradeoffs.md and .csv (report/tradeoffs.py) and every other table

    `sweep`       sweep.py builds ranks x seeds (+ baseline, standard), tuning.py chooses learning
                  rates on validation, report/sweep_table.py writes sweep.md/.csv with stats.py (CIs,
                  paired test, Pareto) and report/plots.py; `--executor ray` hands the same specs
                  to ray_executor.py instead
    `publish`     report/publish.py files a folder under results/<hardware-id>/<dataset>/<job>/ and
                  regenerates results/README.md; `compare` (report/compare.py) sets machines side by side
"""

__version__ = "0.1.0"
