"""Which machine a run was measured on: the CPU's signature beside its name, the hardware id that
follows it, the notes beside the timings of a folder that mixes machines, and the warning before a
job is resumed on another machine.

Two CPUs of this project's sessions showed KVM's one name, "AMD EPYC": a Zen 5 with AVX512-BF16 and a
Zen 3 without it. Their records could not be told apart, so a study resumed on the second would have
averaged both machines' step times without a word."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness import catalog, environment, hardware
from harness.report import run_log, tradeoffs
from tests.conftest import REPO, TINY_ARGS

FIXTURES = REPO / "tests" / "fixtures"


def _cpuinfo(family: int, model: int, stepping: int, flags: str, vendor: str = "AuthenticAMD") -> str:
    block = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
             f"model name\t: AMD EPYC\nstepping\t: {stepping}\nflags\t\t: fpu sse sse2 {flags}\n")
    return block.format(n=0) + "\n" + block.format(n=1)


ZEN3 = _cpuinfo(25, 1, 1, "avx2 fma")
ZEN5 = _cpuinfo(26, 2, 1, "avx2 avx512f avx512_vnni avx512_bf16")
SAPPHIRE_RAPIDS = _cpuinfo(6, 143, 8, "avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8",
                           vendor="GenuineIntel")
NEOVERSE = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd sve sve2 bf16 i8mm\nCPU implementer\t: 0x41\n" \
           "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd4f\nCPU revision\t: 1\n"


def _env(cpuinfo: str | None, name: str = "AMD EPYC") -> dict:
    return {"device": "cpu", "device_type": "cpu", "cpu_model": name, "cpu_count": 2,
            **hardware.cpu_signature(cpuinfo or "")}


def test_the_signature_tells_apart_two_cpus_that_share_a_name():
    zen3, zen5 = hardware.cpu_signature(ZEN3), hardware.cpu_signature(ZEN5)
    assert zen3 == {"cpu_vendor": "AuthenticAMD", "cpu_family": "25", "cpu_model_number": "1", "cpu_stepping": "1",
                    "cpu_isa": "avx2"}
    assert zen5["cpu_isa"] == "avx2,avx512f,avx512_vnni,avx512_bf16"
    assert hardware.describe_cpu(zen3) == "AuthenticAMD family 25 model 1 stepping 1, avx2"
    assert "amx_bf16" in hardware.describe_cpu(hardware.cpu_signature(SAPPHIRE_RAPIDS))
    arm = hardware.cpu_signature(NEOVERSE)
    assert arm["cpu_vendor"] == "0x41" and arm["cpu_model_number"] == "0xd4f" and "sve2" in arm["cpu_isa"]
    assert hardware.cpu_signature("") == dict.fromkeys(hardware.CPU_FIELDS)
    assert hardware.describe_cpu(hardware.cpu_signature("")) == ""
    # and the ids and labels that follow from them
    assert catalog.hardware_id(_env(ZEN3)) == "cpu-amd-epyc-f25m1-2c"
    assert catalog.hardware_id(_env(ZEN5)) == "cpu-amd-epyc-f26m2-2c"
    assert catalog.hardware_id(_env(None)) == "cpu-amd-epyc-2c"  # a record from before the signature
    assert hardware.machine_label(_env(ZEN3)) != hardware.machine_label(_env(ZEN5))
    # the CPU column of the run log and a bench report's machine line: name, cores, signature
    assert hardware.cpu_label(_env(ZEN3)) == "AMD EPYC, 2 cores (AuthenticAMD family 25 model 1 stepping 1, avx2)"
    assert hardware.cpu_label(_env(None)) == "AMD EPYC, 2 cores" and hardware.cpu_label({}) == "-, - cores"


def test_this_machine_records_its_signature():
    env = environment.collect_environment("cpu")
    if not Path("/proc/cpuinfo").is_file():
        assert env["cpu_vendor"] is None  # macOS, Windows: nothing to read; the name alone is recorded
        return
    assert env["cpu_vendor"] and env["cpu_model_number"]
    assert hardware.describe_cpu(env) in hardware.machine_label(env)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_LINE = st.one_of(st.tuples(st.sampled_from(["vendor_id", "cpu family", "model", "stepping", "flags", "Features",
                                              "CPU implementer", "CPU part", "model name"]), _TEXT)
                  .map(lambda kv: f"{kv[0]}\t: {kv[1]}"), _TEXT)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_LINE, max_size=12), count=st.one_of(st.none(), st.integers(0, 512)))
def test_any_cpuinfo_gives_a_signature_or_none_and_a_safe_hardware_id(lines, count):
    """Whatever /proc/cpuinfo holds (a hypervisor's, a new architecture's, garbage), the signature is a
    flat dict of strings or None, and the hardware id stays one safe path component."""
    signature = hardware.cpu_signature("\n".join(lines))
    assert tuple(signature) == hardware.CPU_FIELDS
    assert all(value is None or (isinstance(value, str) and value) or key == "cpu_isa"
               for key, value in signature.items())
    assert set(filter(None, (signature["cpu_isa"] or "").split(","))) <= set(hardware.ISA_FLAGS)
    hid = catalog.hardware_id({"device_type": "cpu", "cpu_model": "AMD EPYC", "cpu_count": count, **signature})
    assert hid and set(hid) <= set(string.ascii_lowercase + string.digits + "-") and hid == hid.strip("-")
    assert isinstance(hardware.machine_label(_env(None) | signature), str)


def _record(fixture: str, env: dict) -> dict:
    record = json.loads((FIXTURES / fixture).read_text())
    record["environment"].update(env)
    return record


def test_the_notes_beside_the_timings_say_when_a_folder_mixes_machines():
    standard, dora = "run-v4-standard.json", "run-v4-dora.json"
    same = [_record(standard, _env(ZEN5)), _record(dora, _env(ZEN5))]
    assert not [n for n in tradeoffs.method_notes(same) if "MACHINES" in n]
    two = [_record(standard, _env(ZEN5)), _record(dora, _env(ZEN3))]
    (note,) = [n for n in tradeoffs.method_notes(two) if "MACHINES" in n]
    assert note.startswith("TIMINGS MIX 2 MACHINES") and "family 25" in note and "family 26" in note
    # a run that recorded only the name beside one that recorded its signature: not known to be the same
    unknown = [_record(standard, _env(None)), _record(dora, _env(ZEN5))]
    (note,) = [n for n in tradeoffs.method_notes(unknown) if "MACHINES" in n]
    assert note.startswith("TIMINGS MAY MIX MACHINES") and "cpu AMD EPYC, 2 cores (1 runs)" in note
    # ... and three of them, two signatures among them: a known mix
    three = [*unknown, _record(dora, _env(ZEN3) | {"run_id": "other"})]
    (note,) = [n for n in tradeoffs.method_notes(three) if "MACHINES" in n]
    assert note.startswith("TIMINGS MIX 3 MACHINES")
    assert "family 25 model 1" in run_log.COLUMNS[6][1](two[1]) and run_log.COLUMNS[6][0] == "CPU"


def _this_machine() -> dict:
    return {"device": "cpu", "cpu_model": environment.cpu_model(), "cpu_count": os.cpu_count(),
            **hardware.cpu_signature(), "device_name": None}


def test_a_job_resumed_on_another_machine_is_warned_before_its_first_run(tmp_path, capsys, tiny_model_path):
    """One line on stderr, naming both machines and how many runs the other made; no line where the
    folder's runs were made here."""
    from harness.__main__ import main
    argv = ["run", "--dry-run", *TINY_ARGS, "--arms", "baseline"]
    here, there = tmp_path / "here", tmp_path / "there"
    for out, env in ((here, _this_machine()), (there, _env(ZEN5) | {"cpu_model": "Another CPU"})):
        (out / "runs").mkdir(parents=True)
        record = _record("run-v4-standard.json", env)
        (out / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    assert main([*argv, "--out", str(here)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main([*argv, "--out", str(there)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1 and "holds 1 run(s)" in lines[0]
    assert "Another CPU" in lines[0] and hardware.machine_label(_this_machine()) in lines[0]
