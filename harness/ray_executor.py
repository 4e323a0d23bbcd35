"""The ``ray`` executor: the same sweep across a Ray cluster (``pip install .[ray]``).

Each run is one Ray task that asks for a whole device: ``num_gpus=1`` where the cluster has GPUs,
otherwise every CPU of a node. Two runs therefore never share a device, and timings stay faithful.
The task runs the very same worker entry point as the local executor (``python -m harness.worker``
in a fresh subprocess) and returns the record; the driver files it. A task lost with its node or
worker process is retried ``max_retries`` times by Ray, then recorded as failed (reason ``lost``).
"""

from __future__ import annotations

from harness.runner import _failure, run_in_worker
from harness.spec import RunSpec

INSTALL_HINT = "the ray executor needs Ray: pip install 'lora-bench-harness[ray]' (or pip install ray)"


class RayUnavailable(RuntimeError):
    pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def run_remote(spec_dict: dict) -> dict:
    """Runs on a Ray worker: one fresh harness worker subprocess, and where it ran."""
    import ray
    record = run_in_worker(RunSpec.from_dict(spec_dict))
    context = ray.get_runtime_context()
    record["environment"]["executor"] = "ray"
    record["environment"]["ray_node_id"] = context.get_node_id()
    return record


def task_resources(ray) -> dict:
    """One whole device per run: a GPU if the cluster has any, else all CPUs of the smallest node."""
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return {"num_cpus": max(1, int(min(cpus))) if cpus else 1}


class RayExecutor:
    name = "ray"

    def __init__(self, *, address: str | None = None, max_retries: int = 2, init_kwargs: dict | None = None):
        self.ray = _import_ray()
        self.address, self.max_retries, self.init_kwargs = address, max_retries, init_kwargs or {}

    def run(self, specs: list[RunSpec], on_record, log=print, *, cache_dir=None, models_dir=None,
            pause_file=None) -> None:
        # cache_dir is ignored: a task may land on another node, where the job's folder is not; for the
        # same reason the command line refuses --save-models with this executor (models_dir is never set).
        # pause_file is not honoured: Ray schedules every task at once.
        from tqdm import tqdm
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **self.init_kwargs)
        resources = task_resources(ray)
        log(f"ray: {len(specs)} task(s), each asking for {resources}, max_retries={self.max_retries}")
        remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False, **resources)(run_remote)
        pending = {remote.remote(spec.to_dict()): spec for spec in specs}
        failed = 0
        with tqdm(total=len(specs), desc="runs", unit="run") as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                try:
                    record = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    record = _failure(spec, "lost", f"ray task lost after {self.max_retries} retries: "
                                                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                failed += record["status"] != "success"
                on_record(spec, record)
                bar.update()
                bar.set_postfix(running=min(len(pending), _slots(ray, resources)), failed=failed)


def _slots(ray, resources: dict) -> int:
    key, per_task = ("GPU", resources["num_gpus"]) if "num_gpus" in resources else ("CPU", resources["num_cpus"])
    return max(1, int(ray.cluster_resources().get(key, per_task) // per_task))
