"""Memory: peak RSS growth of ``export_transcript`` and ``get_messages`` on a 100,000-message session.

The session holds 100,000 messages of about 100 characters (some 10 MB of text),
bulk-loaded through the driver. Each measurement runs in a fresh Python process
(the RSS high-water mark never goes down in a process): it opens the manager,
warms the code paths on a small session, resets the high-water mark to the
current RSS (Linux ``/proc/self/clear_refs``; ``ru_maxrss`` would carry over the
parent's), runs the one call and reports the new high-water mark (``VmHWM``)
minus that baseline. Target: the export grows RSS by less than 50 MB. ``get_messages``
necessarily returns 100,000 records: its growth is reported, beside the floor's
(``fetchall`` of the same rows, timestamps parsed, one tuple per row).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from datasets import MESSAGE_COLUMNS, Target
from harness import T0, Report
from sqlalchemy.engine import make_url

from starpod_session import Channel, SessionManager
from workloads.get_messages import floor_get_messages

MESSAGES = 100_000
EXPORT_LIMIT_MB = 50


def _child(raw_url: str, what: str, session_id: str, small_id: str, folder: str) -> None:
    """Runs in the fresh process: prints the baseline and the peak RSS in KiB as JSON."""
    url = make_url(raw_url)
    with SessionManager(url, folder) as mgr:
        floor = Target(None if url.get_backend_name() == "sqlite" else url, Path(folder)).floor(url)
        floor_get_messages(floor, small_id)
        mgr.get_messages(small_id)
        mgr.export_transcript(small_id)
        mgr.get_messages(session_id, limit=10)
        gc.collect()
        baseline = _high_water_mark_reset()
        if what == "export_transcript":
            size = mgr.export_transcript(session_id).stat().st_size
        elif what == "get_messages":
            size = len(mgr.get_messages(session_id))
        else:
            size = len(floor_get_messages(floor, session_id))
        peak = _status_kib("VmHWM")
        floor.close()
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "size": size}))


def _status_kib(field: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmHWM``: this process image's RSS high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def _high_water_mark_reset() -> int:
    """Reset the RSS high-water mark to the current RSS (Linux's ``clear_refs`` 5); returns it.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark over ``fork`` and
    ``exec`` into it, so a child of a large parent would measure nothing.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return _status_kib("VmHWM")  # growth is then measured from the highest point so far
    return _status_kib("VmRSS")


def _measure(url: str, what: str, session_id: str, small_id: str) -> dict[str, int]:
    bench = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="starpod-memory-") as folder:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), url, what, session_id, small_id, folder],
            capture_output=True,
            text=True,
            cwd=bench,
            env=_env(bench),
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {what} failed:\n{done.stderr}")
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env(bench: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bench), env.get("PYTHONPATH", "")]))
    return env


def run(target: Target, report: Report) -> None:
    """Load the 100,000-message session on ``target``'s backend, then measure each call in its own process."""
    print(f"\nmemory: peak RSS growth over the baseline, a fresh process per call, {MESSAGES:,} messages", flush=True)
    url = target.fresh("memory")
    with SessionManager(url) as mgr:
        long_id = mgr.create_session(Channel.MAIN, "long")
        small_id = mgr.create_session(Channel.MAIN, "small")
        for n in range(20):
            mgr.save_message(small_id, "user", f"small {n}")
    floor = target.floor(url)
    rows = [
        (
            long_id,
            "user" if n % 2 == 0 else "assistant",
            f"message {n:06d} " + "z" * 85,
            floor.stamp(T0 + timedelta(seconds=n)),
        )
        for n in range(MESSAGES)
    ]
    floor.load("session_messages", MESSAGE_COLUMNS, rows)
    del rows
    floor.close()
    with SessionManager(url) as mgr:
        mgr.close_session(long_id, "long")
        mgr.close_session(small_id, "small")
    raw = url.render_as_string(hide_password=False)
    for what in ("export_transcript", "get_messages", "floor get_messages"):
        measured = _measure(raw, what, long_id, small_id)
        growth = (measured["peak_kib"] - measured["baseline_kib"]) / 1024
        unit = "bytes written" if what == "export_transcript" else "records"
        baseline = measured["baseline_kib"] / 1024
        line = f"{what:<34} +{growth:6.1f} MB peak RSS over {baseline:.0f} MB ({measured['size']:,} {unit})"
        print(line, flush=True)
        report.lines.append(line)
        if what == "export_transcript":
            report.check(
                f"export_transcript of {MESSAGES:,} messages: +{growth:.1f} MB peak RSS < {EXPORT_LIMIT_MB} MB",
                growth < EXPORT_LIMIT_MB,
            )


if __name__ == "__main__":
    _child(*sys.argv[1:6])
