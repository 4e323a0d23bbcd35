"""The command line's grammar: the parser of every subcommand and its options, and the exit codes.

``harness/__main__.py`` dispatches the parsed arguments to the commands; ``publish`` reads a job's
stored command lines with this same parser (so a reproduce command reads as the command ran). This
module imports nothing above the spec layer, so both can use it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from harness import data, stats, tuning
from harness.spec import ARMS, PROFILES

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming it and its allowed values, not the usage text."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand: one function below per subcommand, in the order of --help."""
    parser = OneLineParser(
        prog="python -m harness",
        description="Matched, measured comparisons of LoRA against full fine-tuning for sentence-embedding "
                    "models. Each arm runs in its own fresh worker process, one at a time.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_sweep(sub)
    _add_publish(sub)
    _add_compare(sub)
    _add_bench_compare(sub)
    _add_report(sub)
    _add_recommend(sub)
    _add_sizes(sub)
    _add_serve(sub)
    return parser


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="train and evaluate the arms, then write the tradeoff table",
                         description="Train and evaluate baseline, standard and LoRA arms under matched "
                                     "conditions (same seed, data order, eval set, device and precision). "
                                     "Runs execute one at a time: concurrent runs spoil each other's timings.")
    run.add_argument("--dataset", default=None,
                     help=f"{data.names()}, or a .csv/.jsonl file with text_a, text_b, score[, category, group, "
                          "split] (default: dating, the generated version 2). Settings apply in "
                          "this order, the last winning: defaults, arm, --profile, --config, --dataset, --set")
    run.add_argument("--arms", default="baseline,standard,lora",
                     help=f"comma-separated arms out of {', '.join(ARMS)} (default: %(default)s)")
    run.add_argument("--seeds", default=None,
                     help="comma-separated training seeds, e.g. 0,1,2: every arm runs once per seed, seed by seed "
                          "(default: the spec's seed, 0)")
    run.add_argument("--out", default=None, help="output folder (default: out/<dataset>-<profile>)")
    run.add_argument("--config", help="a TOML file of spec fields; [arms.<arm>] tables apply to one arm")
    run.add_argument("--profile", default="adr", choices=sorted(PROFILES),
                     help="adr: ADR-001's settings (4 epochs, batch 16, lr 2e-5 / 2e-4, LoRA r=8 alpha=16 "
                          "on query,value); quick: 1 epoch on 480 pairs, about 2 minutes (default: %(default)s)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field for every arm, e.g. --set epochs=1 --set lora.r=16; "
                          "arms.<arm>.KEY=VALUE for one arm only (repeatable)")
    run.add_argument("--force", action="store_true",
                     help="rerun arms that already have a successful result (the old file is moved to "
                          "runs/superseded/, never deleted)")
    run.add_argument("--no-retry-failed", action="store_true",
                     help="keep earlier failed results instead of rerunning them")
    run.add_argument("--per-category", metavar="all|CATEGORY,...",
                     help="train each adapter arm once per category of the training pairs (all, or the names "
                          "given), on that category's pairs only; baseline and standard train once on every pair. "
                          "report then writes tasks.md: each adapter on its own category against standard")
    _margin_option(run)
    _save_models_option(run)
    _dry_run_option(run)
    _verbose_option(run)
    _executor_options(run)


def _add_sweep(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="LoRA rank sweep with the baseline and standard arm as references",
        description="Run baseline, standard and LoRA at each rank (and seed) under matched conditions, then "
                    "write sweep.md, sweep.csv and plots. Runs execute ONE AT A TIME on this machine, because "
                    "concurrent runs spoil each other's timings. A sweep is resumable: each run is keyed by a hash "
                    "of its full spec, and running the same command again skips finished runs. Options may also "
                    "come from a [sweep] table in --config (ranks, seeds, alpha_policy, targets, lr_grid, lr_extend, "
                    "eval_every_steps); command-line flags win.")
    sw.add_argument("--dataset", default=None,
                    help=f"{data.names()} or a .csv/.jsonl file (default: dating); it beats a --config "
                         "file's dataset, and --set beats both")
    sw.add_argument("--methods", help="comma-separated adapter methods of the registry, or all (default: lora); "
                    "baseline and standard always run")
    sw.add_argument("--ranks", help="comma-separated ranks (default: 1,2,4,8,16,32,64); methods without a rank "
                    "(ia3) run once")
    sw.add_argument("--precisions", help="comma-separated: fp32, bf16, fp16 (default: the spec's precision, fp32)")
    sw.add_argument("--seeds", help="comma-separated seeds (default: 0)")
    sw.add_argument("--alpha-policy", help="2r (alpha = 2 x rank, the default) or fixed:N")
    sw.add_argument("--targets", help="query,value (default) | query,key,value,dense | all-linear")
    sw.add_argument("--lr-grid", help="tune each method's learning rate on validation, e.g. "
                                      "'standard=1e-5,2e-5,5e-5;lora=1e-4,2e-4,5e-4', or registry for each "
                                      "method's own grid (first seed only)")
    sw.add_argument("--lr-select", choices=tuning.RULES,
                    help="with --lr-grid, how each variant's rate is chosen: mean (the default: best mean "
                         "validation Spearman over every seed, among the stable rates; the first seed screens the "
                         "grid and its best --lr-screen rates run on the other seeds) or first-seed (best "
                         "validation on the first seed alone, for quick exploration)")
    sw.add_argument("--lr-screen", type=int, help="with --lr-select mean: how many of the first seed's best stable "
                                                 "rates run on the other seeds (default: 2; at least 2)")
    sw.add_argument("--lr-extend", type=int, help="with --lr-grid: when a point's chosen rate (on the first seed, "
                                                 "then by the rule over the seeds) is an end of its grid, try one "
                                                 "step past it, up to N steps past a point's grid, both ends together "
                                                 "(default: 0)")
    sw.add_argument("--eval-every", type=int, help="validation Spearman every N steps for time-to-quality "
                                                   "(default: 50; 0 = off)")
    sw.add_argument("--out", default=None, help="output folder (default: out/<dataset>-sweep)")
    sw.add_argument("--config", help="a TOML file of spec fields, with an optional [sweep] table")
    sw.add_argument("--profile", default="adr", choices=sorted(PROFILES), help="(default: %(default)s)")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a spec field, as in `run` (repeatable)")
    sw.add_argument("--force", action="store_true", help="rerun finished runs too (old files are kept aside)")
    sw.add_argument("--no-retry-failed", action="store_true", help="keep earlier failed results, do not rerun them")
    _margin_option(sw)
    _save_models_option(sw)
    _dry_run_option(sw)
    _verbose_option(sw)
    _executor_options(sw)


def _add_publish(sub) -> None:
    pub = sub.add_parser("publish",
                         help="file an output folder under results/ and regenerate results/README.md",
                         description="With --add OUT --job NAME: copy OUT (runs, tables, plots) to "
                                     "results/<hardware-id>/<dataset>/<NAME>/. "
                                     "Always: regenerate results/README.md and "
                                     "results/ADR-001-comparison.md from the run files under results/.")
    pub.add_argument("--add", help="an output folder written by run or sweep")
    pub.add_argument("--job", help="the job name for --add, e.g. adr or sweep")
    pub.add_argument("--results", default="results", help="the results root (default: %(default)s)")


def _add_compare(sub) -> None:
    cmp_ = sub.add_parser("compare", help="compare result folders from different machines",
                          description="Check that the folders ran the same spec (only hardware may differ), then "
                                      "write compare.md, compare.csv and a grouped bar chart.")
    cmp_.add_argument("folders", nargs="+", help="result folders (each with runs/), the first is the reference")
    cmp_.add_argument("--out", default="out/compare", help="where to write the comparison (default: %(default)s)")
    cmp_.add_argument("--quality-tolerance", type=float, default=0.02,
                      help="flag a Spearman gap between machines above this (default: %(default)s)")


def _add_bench_compare(sub) -> None:
    bc = sub.add_parser("bench-compare", help="did a benchmark regress between two saved pytest-benchmark runs?",
                        description="Compare the per-round samples of every benchmark in BASE and NEW (files saved "
                                    "by pytest bench --benchmark-only --benchmark-save=NAME --benchmark-save-data): "
                                    "regressed, improved or unchanged, from a one-sided Mann-Whitney test and a "
                                    "minimum effect. Exit status 1 when anything regressed.")
    bc.add_argument("base", help="the reference run's JSON (e.g. .benchmarks/<machine>/0001_base.json)")
    bc.add_argument("new", help="the run to judge")
    bc.add_argument("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    bc.add_argument("--min-effect", type=float, default=0.02,
                    help="smallest change of the median that counts, as a fraction (default: %(default)s)")


def _add_report(sub) -> None:
    rep = sub.add_parser("report", help="rebuild tradeoffs.md and tradeoffs.csv from OUT/runs/*.json")
    rep.add_argument("out", help="a folder written by `run`")


def _add_recommend(sub) -> None:
    rec = sub.add_parser("recommend", help="which variant to use under your constraints, and why, from a job's "
                                           "figures",
                         description="Read a job's run files and say which variants meet the constraints, which "
                                     "are Pareto-optimal (quality against train time) and which one to use, each "
                                     "figure with its 95%% CI; never on a difference that is not significant "
                                     "(harness/report/recommend.py says the rule).")
    rec.add_argument("out", help="a folder written by `run` or `sweep`")
    rec.add_argument("--max-memory", type=float, help="peak training memory, MiB")
    rec.add_argument("--max-train-time", type=float, help="train time, seconds")
    rec.add_argument("--max-artifact", type=float, help="artifact to ship, MiB")
    rec.add_argument("--min-gain-share", type=float,
                     help="the smallest share of standard's gain over the baseline, e.g. 0.95 (met only when the "
                          "CI's lower bound is above it)")


def _add_sizes(sub) -> None:
    sz = sub.add_parser("sizes", help="LoRA's saving against model size, from one job per model",
                        description="Set each job's LoRA variants against its standard arm (costs as % of standard, "
                                    "paired by seed; the share of standard's quality gain) and order the jobs by "
                                    "the model's total parameters: where does LoRA start to pay? The jobs must "
                                    "come from one machine and one dataset. Writes sizes.md, sizes.csv and "
                                    "plots/lora_saving_vs_size.")
    sz.add_argument("folders", nargs="+", help="job folders (each with runs/), one model each")
    sz.add_argument("--out", default="out/sizes", help="where to write the table and plot (default: %(default)s)")


def _add_serve(sub) -> None:
    sv = sub.add_parser("serve", help="serve a --per-category job's adapters from one process and check them",
                        description="Load the base model once and every adapter a `run --per-category --save-models` "
                                    "job kept onto it (peft's loaders), make each active in turn (set_adapter) and "
                                    "check that it reproduces its run's test cosines; record the memory of the "
                                    "process and the switch time in OUT/serving.json and tasks.md. Exit status 1 "
                                    "when an adapter does not reproduce its run.")
    sv.add_argument("out", help="a folder written by run --per-category --save-models")


def _margin_option(parser) -> None:
    parser.add_argument("--margin", type=float, help="the smallest difference in test Spearman that counts: a "
                        "difference whose 95%% CI lies within +-MARGIN is reported as equivalent (default: "
                        f"{stats.SPEARMAN_MARGIN}; kept in the folder's job.json for report and publish)")


def _executor_options(parser) -> None:
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: one worker subprocess at a time here (default); ray: one Ray task per run, "
                             "each holding a whole device (a GPU, or all CPUs of a node); needs pip install .[ray]")
    parser.add_argument("--ray-address", default=None,
                        help="a running Ray cluster: auto or HOST:PORT (default: start a local Ray instance)")
    parser.add_argument("--ray-max-retries", type=int, default=2,
                        help="retries of a task lost with its node or worker before it is recorded as failed "
                             "(default: %(default)s)")


def _dry_run_option(parser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything that can be checked before training (specs, data, model, "
                             "targets, device, the output folder's rule), print the runs it would start, and "
                             "stop: nothing is written")


def _verbose_option(parser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show the trainer's own progress bar and per-step logs, and the model loading output "
                             "(by default each run prints one line per tenth of its steps)")


def _save_models_option(parser) -> None:
    parser.add_argument("--save-models", action="store_true",
                        help="keep each trained arm's artifact in OUT/models/<run_id>/ (the full model for standard, "
                             "the peft adapter folder for adapter methods), checked to reload like the evaluated "
                             "model; off by default (a full MiniLM is about 90 MB)")


def one_line(message: str) -> str:
    """Bad input is reported on one line: several problems are numbered and joined, not stacked."""
    problems = [line.strip() for line in message.splitlines() if line.strip()] or ["bad input"]
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems: " + "; ".join(f"({i}) {p}" for i, p in enumerate(problems, start=1))


@contextlib.contextmanager
def warnings_as_lines():
    """Every warning raised while a command runs (a run file skipped, a manifest that cannot be read, a
    library's own) printed to stderr as it happens, as one ``warning:`` line, each message once; not
    Python's two-line ``file:line: UserWarning``. The filters stay as they are (deprecations hidden)."""
    said: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = one_line(str(message))
        if text not in said:
            said.add(text)
            print(f"warning: {text}", file=sys.stderr, flush=True)
    before = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = before
