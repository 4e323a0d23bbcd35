"""Files the harness writes: every one atomically (a temporary file in the same folder, fsync, rename),
never through a symlink, with the user's umask; names that are safe as one path component; and the lock
that keeps a second harness process out of an output folder. A leaf module: the standard library only
(matplotlib is imported where a figure is saved)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """The harness's own cache: $HARNESS_CACHE, else ~/.cache/lora-bench-harness (the tiny model, the
    joined mpnet, the generated dating data). What is there can be deleted; it is made again."""
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "lora-bench-harness"))


def slug(text) -> str:
    """Lower-case letters, digits and single dashes: safe as one path component."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def write_json_atomic(path: Path, data: dict, *, overwrite: bool = False) -> None:
    """Write to a temporary file in the same folder, flush and fsync, then rename into place.

    A reader never sees a half-written file. Without ``overwrite`` an existing file is an error.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path}: a result already exists; refusing to overwrite it")
    text = json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_text_atomic(path: Path, text: str) -> Path:
    """Tables and pages: the same temporary file, fsync and rename as records."""
    write_bytes_atomic(Path(path), text.encode("utf-8"))
    return Path(path)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Never through a symlink (the rename replaces the link itself), never half written, and with
    the permissions the user's umask gives a new file (mkstemp alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_tree_new(src: Path, dest: Path, **kwargs) -> Path:
    """shutil.copytree(src, dest) into a folder that does not exist yet, creating its parents, and all or
    nothing: where the copy fails (a name the file system refuses, a full disk, no permission), the folders
    it created are removed again, so a refused publish leaves no half-made tree behind."""
    import shutil

    dest = Path(dest)
    created = [p for p in (dest, *dest.parents) if not p.exists()]  # innermost first
    try:
        return Path(shutil.copytree(src, dest, **kwargs))
    except BaseException:
        if dest in created:
            shutil.rmtree(dest, ignore_errors=True)
        for folder in created[1:]:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (something else wrote there meanwhile) or already gone: keep the rest
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure_atomic(fig, path: Path, **kwargs) -> Path:
    """matplotlib's savefig into a buffer, then an atomic write."""
    import io
    buffer = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".")
    if fmt == "svg":  # no creation date: the same figure gives the same file (published files are diffed)
        kwargs.setdefault("metadata", {"Date": None})
    import matplotlib
    with matplotlib.rc_context({"svg.hashsalt": "harness"}):  # element ids from a fixed salt, not a random one
        fig.savefig(buffer, format=fmt, **kwargs)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return Path(path)


def frame_to_csv_atomic(frame, path: Path, **kwargs) -> Path:
    return write_text_atomic(Path(path), frame.to_csv(**kwargs))


def _finite(value):
    """JSON has no NaN or infinity: store them as null rather than lose the record."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class OutputLock:
    """An exclusive ``fcntl.flock`` on ``OUT/.lock`` for one harness process at a time: two processes
    on one folder would run every arm twice and spoil each other's timings. Released on exit, even
    when the process is killed (the kernel drops the lock with the file descriptor)."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ValueError(f"--out {str(self.path.parent)!r} is in use by {holder}; wait for it to finish or "
                             "choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} ({' '.join(sys.argv[:3])})".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
