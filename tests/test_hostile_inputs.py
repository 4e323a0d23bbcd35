"""A hostile user's inputs, generated from tables: every one must get exit status 2, exactly one line
on stderr that names the problem, no traceback, and nothing written to --out or the working folder.

The command line runs in-process (``harness.__main__.main``), so that some 200 cases take seconds,
not the minutes of 200 fresh interpreters; ``tests/test_bad_input.py`` covers the same promise
through real subprocesses. Adding a case is one line in a table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.__main__ import main

FIXTURE = Path(__file__).parent / "fixtures" / "run-v2-lora.json"

# --- spec values, through --set (field, bad value, words the error line must contain) -----------
INT_FIELDS = ["batch_size", "max_steps", "warmup_steps", "seed", "dataset_seed", "max_seq_length", "train_limit",
              "eval_limit", "burn_in_steps", "eval_every_steps", "lora.r"]
FLOAT_FIELDS = ["epochs", "learning_rate", "compatible_threshold", "timeout_s", "lora.alpha", "lora.dropout"]
NOT_AN_INT = [("1.5", "expected an integer"), ("'x'", "expected an integer"), ("true", "expected an integer"),
              ("[1]", "expected an integer"), ("inf", "expected an integer")]
NOT_A_FINITE_NUMBER = [("nan", "finite"), ("inf", "finite"), ("-inf", "finite"), ("'x'", "expected a number"),
                       ("true", "expected a number"), ("[1]", "expected a number")]
OUT_OF_RANGE = [
    ("batch_size", "0", ">= 1"), ("batch_size", "-4", ">= 1"), ("max_steps", "-1", ">= 0"),
    ("warmup_steps", "-1", ">= 0"), ("seed", "-1", "[0, 4294967295]"), ("seed", "4294967296", "[0, 4294967295]"),
    ("dataset_seed", "-1", "[0, 4294967295]"), ("dataset_seed", "99999999999", "[0, 4294967295]"),
    ("max_seq_length", "-8", ">= 0"), ("train_limit", "-1", ">= 0"), ("eval_limit", "-1", ">= 0"),
    ("burn_in_steps", "-1", ">= 0"), ("eval_every_steps", "-5", ">= 0"), ("lora.r", "0", ">= 1"),
    ("lora.r", "-8", ">= 1"), ("epochs", "-1", ">= 0"), ("learning_rate", "0", "> 0"),
    ("learning_rate", "-1e-4", "> 0"), ("compatible_threshold", "0", "strictly between 0 and 1"),
    ("compatible_threshold", "1", "strictly between 0 and 1"), ("timeout_s", "-1", ">= 0"),
    ("lora.alpha", "0", "> 0"), ("lora.alpha", "-16", "> 0"), ("lora.dropout", "1", "in [0, 1)"),
    ("lora.dropout", "-0.1", "in [0, 1)"), ("device", "tpu", "one of auto, cpu, cuda, mps"),
    ("device", "cuda", "not available"), ("device", "mps", "not available"), ("precision", "fp8", "one of fp32"),
    ("precision", "fp16", "needs a CUDA GPU"),
    ("loss", "MSE", "one of CosineSimilarityLoss"), ("country_iso_code", "US", "3-letter"),
    ("country_iso_code", "'12345'", "3-letter"), ("country_iso_code", "1234", "expected a string"),
    ("score_range", "[1, 0]", "high > low"),
    ("score_range", "[0, inf]", "finite"), ("score_range", "[0]", "two numbers"), ("score_range", "'x'", "two numbers"),
    ("measure_energy", "maybe", "true or false"), ("measure_energy", "1", "true or false"),
    ("model", "/nonexistent/model", "no such folder"), ("model", "./missing", "no such folder"),
    ("lora.target_modules", "q,v", "not found in this model"), ("lora.target_modules", "[]", "non-empty"),
    ("lora.target_modules", "[1, 2]", "list of module names"), ("dataset", "nope.csv", "not found"),
    ("dataset", "data.parquet", "not a built-in dataset"), ("epochs", "0", "> 0 when max_steps is 0"),
]
STRUCTURE = [  # a table where a value is expected, or a value where a table is expected
    (["--set", "lora=5"], "expected a table of LoRA fields"), (["--set", "lora=true"], "expected a table"),
    (["--set", "lora='r8'"], "expected a table"), (["--set", "arms=3"], "expected a table"),
    (["--set", "arms.lora=true"], "expected a table of spec fields"), (["--set", "arms.lora=7"], "expected a table"),
    (["--set", "arms.lora='x'"], "expected a table"), (["--set", "arms.lora.lora=5"], "expected a table"),
    (["--set", "arms.lroa.epochs=1"], "arm 'lroa' in [arms] is unknown"),
    (["--set", "arms.standard.epochs=nan"], "finite"), (["--set", "arms.lora.lora.r=0"], ">= 1"),
    (["--set", "learnig_rate=1e-4"], "did you mean 'learning_rate'"), (["--set", "lr=1e-4"], "did you mean"),
    (["--set", "lora.rank=4"], "did you mean 'r'"), (["--set", "lora_r=4"], "unknown key"),
    (["--set", "=5"], "expected key=value"), (["--set", "epochs"], "expected key=value"),
    (["--set", "epochs.x=1"], "expected a number"),
]
CLI = [  # whole command lines after the subcommand
    (["run", "--arms", ""], "arms: none given"), (["run", "--arms", ","], "arms: none given"),
    (["run", "--arms", "baseline,baseline"], "given 2 times"), (["run", "--arms", "lroa"], "did you mean 'lora'"),
    (["run", "--arms", "standard,lora,lora"], "given 2 times"), (["run", "--seeds", "0,x"], "comma-separated"),
    (["run", "--seeds", "1,1"], "more than once"), (["run", "--seeds", "-1"], "[0, 4294967295]"),
    (["run", "--seeds", ""], "[0, 4294967295]"), (["run", "--profile", "fast"], "invalid choice: 'fast'"),
    (["run", "--executor", "spark"], "invalid choice: 'spark'"), (["run", "--ray-max-retries", "x"], "invalid int"),
    (["run", "--bogus"], "unrecognized arguments"), (["bogus"], "invalid choice: 'bogus'"),
    (["sweep", "--ranks", "0"], "[1, 4294967295]"), (["sweep", "--ranks", "1,1"], "more than once"),
    (["sweep", "--ranks", "a"], "comma-separated"), (["sweep", "--ranks", ","], "[1, 4294967295]"),
    (["sweep", "--seeds", "x"], "comma-separated"), (["sweep", "--eval-every", "abc"], "invalid int value"),
    (["sweep", "--alpha-policy", "3r"], "expected 2r or fixed:NUMBER"),
    (["sweep", "--alpha-policy", "fixed:inf"], "expected 2r or fixed"),
    (["sweep", "--alpha-policy", "fixed:-1"], "expected 2r or fixed"),
    (["sweep", "--alpha-policy", "fixed:x"], "expected 2r or fixed"),
    (["sweep", "--lr-grid", "lora=inf"], "finite numbers > 0"), (["sweep", "--lr-grid", "lora=0"], "> 0"),
    (["sweep", "--lr-grid", "lora=x"], "expected ARM=RATE"),
    (["sweep", "--lr-grid", "baseline=1e-4"], "not a method with a learning rate"),
    (["sweep", "--lr-grid", "lora="], "> 0"), (["sweep", "--profile", "slow"], "invalid choice"),
    (["sweep", "--lr-extend", "2"], "give --lr-grid too"),
    (["sweep", "--lr-grid", "registry", "--lr-extend", "-1"], "lr-extend = -1: must be >= 0"),
    (["sweep", "--targets", "q,v"], "not found in this model"),
    (["sweep", "--methods", "lroa"], "lroa: not an adapter method"), (["sweep", "--methods", "lora,lora"],
                                                                       "more than once"),
    (["sweep", "--methods", "standard"], "baseline and standard are always included"),
    (["sweep", "--precisions", "fp8"], "each must be one of fp32, bf16, fp16"),
    (["sweep", "--precisions", "fp32,fp16"], "needs a CUDA GPU"),
]
DATA_FILES = [  # (file name, bytes, words of the error)
    ("latin1.csv", "text_a,text_b,score\n\"caf\xe9\",b,1\n".encode("latin-1"), "not UTF-8"),
    ("utf16.csv", "text_a,text_b,score\na,b,1\n".encode("utf-16"), "not UTF-8"),
    ("latin1.jsonl", '{"text_a": "caf\xe9", "text_b": "b", "score": 1}\n'.encode("latin-1"), "not UTF-8"),
    ("big-field.csv", b'text_a,text_b,score\n"' + b"x" * 200_000 + b'",b,1\n', "field larger than field limit"),
    ("dup-header.csv", b"text_a,text_b,score,score\na,b,1,2\n", "appears more than once"),
    ("extra-field.csv", b"text_a,text_b,score\na,b,1,2\n", "4 fields, but the header has 3"),
    ("no-header.csv", b"", "empty file"), ("missing-col.csv", b"text_a,score\na,1\n", "missing column text_b"),
    ("bad-score.csv", b"text_a,text_b,score\na,b,high\n", "is not a number"),
    ("nan-score.csv", b"text_a,text_b,score\na,b,nan\n", "not a finite number"),
    ("inf-score.csv", b"text_a,text_b,score\na,b,inf\n", "not a finite number"),
    ("range-score.csv", b"text_a,text_b,score\na,b,7\n", "outside the declared range"),
    ("neg-score.csv", b"text_a,text_b,score\na,b,-1\n", "outside the declared range"),
    ("empty-text.csv", b"text_a,text_b,score\n,b,1\n", "text_a is empty"),
    ("blank-text.csv", b"text_a,text_b,score\na,   ,1\n", "text_b is empty"),
    ("bad-split.csv", b"text_a,text_b,score,split\na,b,1,dev\n", "is not one of train"),
    ("header-only.csv", b"text_a,text_b,score\n", "no data rows"),
    ("num-text.jsonl", b'{"text_a": 12345, "text_b": "b", "score": 1}\n', "text_a must be a string, got a number"),
    ("list-text.jsonl", b'{"text_a": ["a"], "text_b": "b", "score": 1}\n', "got a list"),
    ("obj-text.jsonl", b'{"text_a": "a", "text_b": {"x": 1}, "score": 1}\n', "got an object"),
    ("bool-score.jsonl", b'{"text_a": "a", "text_b": "b", "score": true}\n', "got a boolean"),
    ("list-score.jsonl", b'{"text_a": "a", "text_b": "b", "score": [1]}\n', "got a list"),
    ("str-score.jsonl", b'{"text_a": "a", "text_b": "b", "score": "x"}\n', "is not a number"),
    ("null-score.jsonl", b'{"text_a": "a", "text_b": "b", "score": null}\n', "missing column score"),
    ("bool-group.jsonl", b'{"text_a": "a", "text_b": "b", "score": 1, "group": true}\n', "group must be a string"),
    ("list-category.jsonl", b'{"text_a": "a", "text_b": "b", "score": 1, "category": [1]}\n', "category must be"),
    ("torn.jsonl", b'{"text_a": "a", "text_b"\n', "not valid JSON"),
    ("array.jsonl", b'[1, 2, 3]\n', "expected a JSON object"),
    ("string.jsonl", b'"just a string"\n', "expected a JSON object"),
    ("empty.jsonl", b"\n\n", "no data rows"),
    ("some-split.csv", b"text_a,text_b,score,split\na,b,1,train\nc,d,0,\n", "some rows have a split"),
    ("empty-split.csv", b"text_a,text_b,score,split\na,b,1,train\nc,d,0,test\n", "split is empty"),
    ("file.txt", b"text_a,text_b,score\n", "not a built-in dataset"),
]
CONFIGS = [  # (TOML text, words of the error); "FOLDER" means --config names a folder
    ("FOLDER", "is a folder"), ("epochs = [", "not valid TOML"), ("lora = 5", "expected a table of LoRA fields"),
    ("[arms]\nlora = \"x\"", "expected a table of spec fields"), ("arms = 3", "expected a table"),
    ("epochs = nan", "finite"), ("epochs = inf", "finite"), ("[lora]\nalpha = -inf", "finite"),
    ("learnig_rate = 1e-4", "did you mean 'learning_rate'"), ("[arms.lroa]\nepochs = 1", "unknown"),
    ("seed = -1", "[0, 4294967295]"), ("[lora]\nr = 0", ">= 1"),
]
SWEEP_CONFIGS = [
    ("[sweep]\neval_every_steps = \"often\"", "expected an integer >= 0"),
    ("[sweep]\nlr_grid = 5", "expected a string"), ("[sweep]\nlr_extend = \"twice\"", "expected an integer >= 0"),
    ("[sweep]\nranks = [1, \"x\"]", "list of integers"), ("[sweep]\nseeds = 3.5", "list of integers"),
    ("[sweep]\nalpha_policy = 2", "expected a string"), ("[sweep]\ntargets = 5", "list of module names"),
    ("[sweep]\nrnaks = [1]", "unknown key"), ("sweep = 3", "expected a table"),
    ("[sweep]\neval_every_steps = -1", "expected an integer >= 0"), ("[sweep]\nranks = \"1,1\"", "more than once"),
]


MODELS = [  # --set model=..., with folders made by the inputs fixture
    ("all-MiniLM-L6-v3", "did you mean 'all-MiniLM-L6-v2'"), ("tiny-random-bret", "did you mean 'tiny-random-bert'"),
    ("some-org/no-such-model", "offline"), ("INPUT/broken-config", "config.json cannot be read"),
    ("INPUT/broken-modules", "modules.json is not a valid list"), ("INPUT/modules-not-list", "not a valid list"),
    ("INPUT/a-file", "is a file"), ("INPUT/empty-folder", "not a sentence-transformers model folder"),
    # a real model folder whose weights cannot be loaded: known before training, so refused before any worker
    ("INPUT/mismatched-weights", "its config.json gives encoder.layer.0.intermediate.dense.weight the shape [48, 32], "
                                 "its weights hold [64, 32]"),
    # one size of 2**30 would ask for terabytes: refused from the checkpoint's header, before anything is built
    ("INPUT/huge-hidden", "gives embeddings.word_embeddings.weight the shape [30522, 1073741824], its weights hold "
                          "[30522, 32]"),
    ("INPUT/truncated-weights", "cannot be loaded from"),
    # loads, then cannot encode (a modality method of null): refused by the pre-flight's one-sentence encode
    ("INPUT/cannot-encode", "but cannot encode a sentence (TypeError"),
    # transformers builds every layer a config asks for before it reads the weights: refused from the header
    ("INPUT/many-layers", "asks for 1000000000 layers (num_hidden_layers), its weights hold 2"),
]


def _cases():
    for field in INT_FIELDS:
        for value, words in NOT_AN_INT:
            yield f"int-{field}={value}", ["run", "--set", f"{field}={value}"], words
    for field in FLOAT_FIELDS:
        for value, words in NOT_A_FINITE_NUMBER:
            yield f"float-{field}={value}", ["run", "--set", f"{field}={value}"], words
    for field, value, words in OUT_OF_RANGE:
        yield f"range-{field}={value}", ["run", "--set", f"{field}={value}"], words
    for model, words in MODELS:
        yield f"model-{model}", ["run", "--set", f"model={model}"], words
    for args, words in STRUCTURE:
        yield f"structure-{' '.join(args)}", ["run", *args], words
    for args, words in CLI:
        yield f"cli-{' '.join(args)}", args, words
    for name, _, words in DATA_FILES:
        yield f"data-{name}", ["run", "--dataset", f"INPUT/{name}"], words
    for i, (_, words) in enumerate(CONFIGS):
        yield f"config-{i}", ["run", "--config", f"INPUT/config-{i}.toml"], words
    for i, (_, words) in enumerate(SWEEP_CONFIGS):
        yield f"sweep-config-{i}", ["sweep", "--config", f"INPUT/sweep-{i}.toml"], words
    for name, words in (("compare --out FILE", "exists and is not a folder"),):
        yield name, ["compare", "INPUT/job", "--out", "INPUT/a-file"], words
    yield "publish --results FILE", ["publish", "--results", "INPUT/a-file"], "exists and is not a folder"
    yield "publish --add without --job", ["publish", "--add", "INPUT/job"], "needs --job"
    yield "publish --job ..", ["publish", "--add", "INPUT/job", "--job", "../../..", "--results", "OUT"], "empty name"
    yield "report of a file", ["report", "INPUT/a-file"], "no runs/ folder"
    yield "report of nothing", ["report", "INPUT/missing"], "no runs/ folder"
    yield "compare of nothing", ["compare", "INPUT/missing", "--out", "OUT"], "no runs/ folder"


CASES = list(_cases())
TINY = ["--set", "model=tiny-random-bert", "--set", "train_limit=64", "--set", "eval_limit=48"]


def test_the_suite_tries_at_least_150_distinct_bad_inputs():
    assert len(CASES) >= 150 and len({tuple(args) for _, args, _ in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, harness_cache):
    folder = tmp_path_factory.mktemp("hostile-inputs")
    for name, payload, _ in DATA_FILES:
        (folder / name).write_bytes(payload)
    for i, (text, _) in enumerate(CONFIGS):
        if text == "FOLDER":
            (folder / f"config-{i}.toml").mkdir()
        else:
            (folder / f"config-{i}.toml").write_text(text + "\n")
    for i, (text, _) in enumerate(SWEEP_CONFIGS):
        (folder / f"sweep-{i}.toml").write_text(text + "\n")
    (folder / "a-file").write_text("a file, not a folder\n")
    transformer = '[{"path": "", "type": "sentence_transformers.models.Transformer"}]'
    for name, modules, config in (("broken-config", transformer, "{not json"), ("broken-modules", "[1, 2", "{}"),
                                  ("modules-not-list", '{"a": 1}', "{}")):
        (folder / name).mkdir()
        (folder / name / "modules.json").write_text(modules)
        (folder / name / "config.json").write_text(config)
    (folder / "empty-folder").mkdir()
    from harness.models import TINY_MODEL, resolve_model_path
    tiny = Path(resolve_model_path(TINY_MODEL, cache_dir=harness_cache))
    for name in ("mismatched-weights", "truncated-weights", "many-layers", "huge-hidden", "cannot-encode"):
        shutil.copytree(tiny, folder / name)
    config = json.loads((folder / "mismatched-weights" / "config.json").read_text())
    (folder / "mismatched-weights" / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    (folder / "many-layers" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 10**9}))
    (folder / "huge-hidden" / "config.json").write_text(json.dumps({**config, "hidden_size": 2**30}))
    weights = folder / "truncated-weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (folder / "cannot-encode" / "sentence_bert_config.json").write_text(json.dumps(
        {"transformer_task": "feature-extraction", "module_output_name": "token_embeddings",
         "modality_config": {"text": {"method": None, "method_output_name": "last_hidden_state"}}}))
    (folder / "job" / "runs").mkdir(parents=True)
    (folder / "job" / "runs" / "r.json").write_text(FIXTURE.read_text())
    return folder


@pytest.mark.parametrize("name, args, words", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gets_one_line_exit_2_and_writes_nothing(name, args, words, inputs, tmp_path, monkeypatch,
                                                               capsys):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as tox and CI run; nothing may reach for a network
    argv = [a.replace("INPUT", str(inputs)).replace("OUT", str(out)) if "INPUT" in a or a.startswith("OUT") else a
            for a in args]
    if argv[0] in ("run", "sweep"):  # the tiny model first, so that the hostile value comes last and wins
        argv = [argv[0], *TINY, "--out", str(out), *argv[1:]]
    before = sorted(p.name for p in inputs.rglob("*"))
    code = invoke(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert words in err, err
    assert "Traceback" not in err
    assert not out.exists() and list(work.iterdir()) == []
    assert sorted(p.name for p in inputs.rglob("*")) == before


def invoke(argv: list[str]) -> int:
    """The exit status of the command line, whether it returns it or exits with it (argparse)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# --- records: report and compare skip a bad file with one warning that names it -----------------
GOOD = json.loads(FIXTURE.read_text())
BAD_RECORDS = {
    "version-only.json": json.dumps({"schema_version": 2}),
    "no-quality.json": json.dumps({k: v for k, v in GOOD.items() if k != "quality"}),
    "failed-null-error.json": json.dumps({**GOOD, "status": "failed", "error": None}),
    "label-number.json": json.dumps({**GOOD, "label": 8}),
    "label-unparsable.json": json.dumps({**GOOD, "label": "", "run_id": "x"}),
    "binary.json": b"\x00\xff\xfe garbage \x80",
    "torn.json": '{"schema_version": 2, "run',
    "future.json": json.dumps({**GOOD, "schema_version": 99}),
    "list.json": "[1, 2]",
    "run-id-path.json": json.dumps({**GOOD, "run_id": "../../etc/x"}),
    "status-odd.json": json.dumps({**GOOD, "status": "maybe"}),
    "params-string.json": json.dumps({**GOOD, "params": "many"}),
}


@pytest.mark.parametrize("name", sorted([*BAD_RECORDS, "folder.json"]))
def test_report_skips_a_bad_record_with_one_warning_naming_it(name, tmp_path, capsys):
    out = tmp_path / "job"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "good.json").write_text(FIXTURE.read_text())
    bad = out / "runs" / name
    if name == "folder.json":
        bad.mkdir()
    else:
        payload = BAD_RECORDS[name]
        bad.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
    code = invoke(["report", str(out)])
    err = capsys.readouterr().err
    assert code in (0, 1), err  # 1 only where the good run's own status says so
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: skipping") and name in lines[0], err
    assert "Traceback" not in err
    assert (out / "tradeoffs.md").exists()
