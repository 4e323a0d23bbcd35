"""Which machine a run was measured on, as every reader names it: the CPU's signature (read from
/proc/cpuinfo by environment.collect_cpu, kept in each record's environment), its description and
the machine's label in tables and warnings. catalog.hardware_id files a job under it.

A CPU's name is not enough: under KVM one name, "AMD EPYC", stood for a Zen 5 with AVX512-BF16 and a
Zen 3 without it, whose step times differ by several times."""

from __future__ import annotations

from pathlib import Path

# The vector extensions that decide how fast a CPU multiplies matrices, in each precision.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
             "asimd", "sve", "sve2", "bf16", "i8mm")
# A CPU's signature in a record's environment: flat strings, as every environment value is.
CPU_FIELDS = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping", "cpu_isa")


def cpu_signature(cpuinfo: str | None = None) -> dict[str, str | None]:
    """What tells two CPUs apart where the model name cannot: under KVM one name, "AMD EPYC", stood for
    a Zen 5 with AVX512-BF16 and a Zen 3 without it, whose timings differ by several times. The vendor,
    family, model and stepping of the first processor of /proc/cpuinfo (an ARM core's implementer,
    architecture, part and variant) and which of ISA_FLAGS it has (comma-separated), as CPU_FIELDS;
    all None where there is no /proc/cpuinfo to read (macOS, Windows) or it names no vendor and model."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    x86 = "vendor_id" in fields
    vendor = fields.get("vendor_id") if x86 else fields.get("cpu implementer")
    model = fields.get("model") if x86 else fields.get("cpu part")
    if not vendor or not model:
        return dict.fromkeys(CPU_FIELDS)
    flags = set((fields.get("flags" if x86 else "features") or "").split())
    return {"cpu_vendor": vendor, "cpu_family": fields.get("cpu family" if x86 else "cpu architecture") or None,
            "cpu_model_number": model, "cpu_stepping": fields.get("stepping" if x86 else "cpu variant") or None,
            "cpu_isa": ",".join(f for f in ISA_FLAGS if f in flags)}


def describe_cpu(env: dict) -> str:
    """A record's CPU signature, e.g. "AuthenticAMD family 25 model 1 stepping 1, avx2"; "" where the
    record has none (made before the harness kept it, or on a system without /proc/cpuinfo)."""
    if not (env.get("cpu_vendor") and env.get("cpu_model_number")):
        return ""
    parts = [str(env["cpu_vendor"])] + [f"{word} {env[key]}" for word, key in (
        ("family", "cpu_family"), ("model", "cpu_model_number"), ("stepping", "cpu_stepping")) if env.get(key)]
    isa = str(env.get("cpu_isa") or "").replace(",", ", ")
    return " ".join(parts) + ", " + (isa or "none of " + "/".join(ISA_FLAGS[:3]))


def cpu_label(env: dict) -> str:
    """The CPU a record ran on, as tables name it: its name, its cores and, where recorded, its signature
    (e.g. "AMD EPYC, 2 cores (AuthenticAMD family 25 model 1 stepping 1, avx2)"); "-" for what is missing."""
    signature = describe_cpu(env)
    cpu = f"{env.get('cpu_model') or '-'}, {env.get('cpu_count') or '-'} cores"
    return cpu + (f" ({signature})" if signature else "")


def machine_label(env: dict) -> str:
    """The machine a record ran on, as tables name it: device, its model, the CPU's cores and, where
    recorded, its signature (e.g. "cpu AMD EPYC, 2 cores (AuthenticAMD family 25 model 1 stepping 1, avx2)")."""
    name = env.get("device_name") or env.get("cpu_model") or "unknown"
    return f"{env.get('device') or 'cpu'} {cpu_label({**env, 'cpu_model': name})}"
