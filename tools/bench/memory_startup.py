"""Peak memory and start-up of the device agent, against the floor measured in the same run.

    python -m edgecascade.tools.bench.memory_startup [--runs 5] [--idle-s 3]

Every figure is a whole process, started fresh `--runs` times; the median is printed with the
min and max. Peak RSS is the kernel's own accounting of the finished child (wait4's
ru_maxrss); the daemon's idle figure is its VmHWM after `--idle-s` seconds of idling. A
child's ru_maxrss cannot read below this process's own peak at the fork, so this script
imports neither numpy nor the agent (its own peak is printed).

- floor: python + numpy + LiteRT with the demo model loaded and run once, + orjson and
  sqlite3 (what any agent needs), with one OpenBLAS thread as the agent sets; `import pydantic`
  there is lazy (its modules load with the first model class), so pydantic adds ~nothing;
- floor + pydantic: the same process that also defines one pydantic model class, which loads
  pydantic and pydantic-core for real: the share of start-up and memory that is pydantic's own
  whatever the profile, card and protocol classes cost on top;
- `agent predict` on a .npy digit with the LiteRT demo model, offline profile (no cloud);
  the same on a PNG (OpenCV decodes it) and with the ONNX model, for reference;
- `agent run` (LiteRT, local API on, MQTT off): start to READY=1 on $NOTIFY_SOCKET (the
  moment systemd would consider it started; the local API is listening then) and idle RSS,
  both at a restart (the model's child-process check is on record in the data dir: the usual
  start) and at a first start (record removed: the model is checked in a child first);
- `edgecascade --version`: wall time, next to `python -c pass` measured alike;
- the floor's own start to exit (wall), against which start to READY=1 is also given as a ratio.

Children run with bytecode caching on (PYTHONDONTWRITEBYTECODE is dropped from their
environment) after one unmeasured round, as on a device where pip compiled the installed
package: otherwise an editable checkout's modules are compiled from source at every start.
Wall times move with other load on the machine; the CPU figures hardly do.

Targets (issue 13): predict <= 64 MiB, daemon idle <= 80 MiB, --version <= 100 ms, start to
ready <= 300 ms."""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from edgecascade import bundled

MiB = 1024.0
#: edge/model_check.py's record of passed checks (not imported: that module imports numpy).
CHECK_RECORDS = "model_checks.json"
TARGETS = {"predict_litert_mib": 64.0, "daemon_idle_mib": 80.0, "version_ms": 100.0, "ready_ms": 300.0}
KEY_PACKAGES = [
    "numpy",
    "ai-edge-litert",
    "onnxruntime",
    "opencv-python-headless",
    "pydantic",
    "orjson",
    "paho-mqtt",
    "starlette",
    "uvicorn",
    "prometheus-client",
    "cryptography",
]

FLOOR = """
import os; os.environ["OPENBLAS_NUM_THREADS"] = "1"
import sqlite3, orjson, pydantic, numpy as np
from ai_edge_litert.interpreter import Interpreter
i = Interpreter(model_path={model!r}, num_threads=1)
i.allocate_tensors()
d = i.get_input_details()[0]
i.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
i.invoke()
"""
#: The floor that also builds one pydantic model, so pydantic's modules really load.
FLOOR_PYDANTIC = f"""{FLOOR}
class Probe(pydantic.BaseModel):
    x: int = 0
Probe(x=1)
"""


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS MiB, wall ms, exit code) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall_ms = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / MiB, wall_ms, proc.returncode


def _vm(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / MiB
    raise RuntimeError(f"no {key} for pid {pid}")


def _cpu_ms(pid: int) -> float:
    """User + system CPU time a process and its waited-for children have used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) * 1000.0 / os.sysconf("SC_CLK_TCK")


def daemon_once(
    cli: list[str], profile: Path, env: dict[str, str], idle_s: float
) -> tuple[float, float, float]:
    """(start to READY=1 in ms, CPU used by then in ms, VmHWM after idling in MiB) of one
    `agent run`. The CPU figure hardly moves with other load on the machine; wall time does."""
    with tempfile.TemporaryDirectory() as tmp:
        address = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.settimeout(30)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*cli, "agent", "run", "--config", str(profile)],
            env={**env, "NOTIFY_SOCKET": address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready_ms = (time.perf_counter() - started) * 1000
            cpu_ms = _cpu_ms(proc.pid)
            time.sleep(idle_s)
            hwm = _vm(proc.pid, "VmHWM")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            sock.close()
    return ready_ms, cpu_ms, hwm


def _fmt(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):7.1f} {unit}  (min {min(values):.1f}, max {max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=3.0)
    ns = parser.parse_args()

    cli = [sys.executable, "-m", "edgecascade"]
    # --version as a user types it: the console script pip installed beside the interpreter.
    console = Path(sys.executable).parent / "edgecascade"
    script = [str(console)] if console.exists() else cli
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EDGECASCADE_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [*cli, "init", "--dir", str(root / "dev"), "--cloud-url", ""],
            env=env,
            check=True,
            capture_output=True,
        )
        litert = root / "dev" / "raspberry-pi-4.toml"
        onnx = root / "dev" / "x86-store-pc.toml"
        subprocess.run(
            [
                *cli,
                "init",
                "--profile",
                "x86-store-pc",
                "--dir",
                str(root / "dev"),
                "--cloud-url",
                "",
                "--force",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        png = root / "dev" / "samples" / "digit_3.png"
        npy = root / "digit.npy"
        to_npy = (
            "import sys, numpy, cv2; numpy.save(sys.argv[2], cv2.imread(sys.argv[1], cv2.IMREAD_GRAYSCALE))"
        )
        subprocess.run([sys.executable, "-c", to_npy, str(png), str(npy)], check=True)
        model = str(bundled.models_dir() / f"{bundled.DEMO_MODEL}.tflite")
        cases = {
            "floor_mib": [sys.executable, "-c", FLOOR.format(model=model)],
            "floor_pydantic_mib": [sys.executable, "-c", FLOOR_PYDANTIC.format(model=model)],
            "predict_litert_mib": [*cli, "agent", "predict", "--config", str(litert), str(npy)],
            "predict_litert_png_mib": [*cli, "agent", "predict", "--config", str(litert), str(png)],
            "predict_onnx_mib": [*cli, "agent", "predict", "--config", str(onnx), str(npy)],
        }
        checks = root / "dev" / "data" / CHECK_RECORDS
        for round_ in range(ns.runs + 1):  # round 0 writes the bytecode caches; not counted
            got: dict[str, float] = {}
            for name, cmd in cases.items():
                peak, wall_ms, rc = run_child(cmd, env)
                if rc != 0:
                    raise SystemExit(f"{name}: exit {rc}: {' '.join(cmd)}")
                got[name] = peak
                if name.startswith("floor"):
                    got[name.replace("_mib", "_ms")] = wall_ms
            _, got["version_ms"], _ = run_child([*script, "--version"], env)
            _, got["python_ms"], _ = run_child([sys.executable, "-c", "pass"], env)
            checks.unlink(missing_ok=True)
            got["first_ready_ms"], got["first_ready_cpu_ms"], _ = daemon_once(cli, litert, env, 0.0)
            if not checks.exists():
                raise SystemExit(f"the daemon recorded no model check in {checks}")
            got["ready_ms"], got["ready_cpu_ms"], got["daemon_idle_mib"] = daemon_once(
                cli, litert, env, ns.idle_s
            )
            if round_:
                for name, value in got.items():
                    results.setdefault(name, []).append(value)

    labels = {
        "floor_mib": "floor: python+numpy+LiteRT(model)+orjson+sqlite3",
        "floor_pydantic_mib": "floor + pydantic (one model class)",
        "predict_litert_mib": "agent predict, LiteRT, .npy (peak RSS)",
        "predict_litert_png_mib": "agent predict, LiteRT, .png (OpenCV)",
        "predict_onnx_mib": "agent predict, ONNX Runtime, .npy",
        "daemon_idle_mib": "agent run idle, LiteRT, API on (VmHWM)",
        "floor_ms": "floor: the same process, start to exit (wall)",
        "floor_pydantic_ms": "floor + pydantic: start to exit (wall)",
        "ready_ms": "agent run: start to READY=1 (wall), restart",
        "ready_cpu_ms": "agent run: CPU used by READY=1 (user+sys), restart",
        "first_ready_ms": "agent run: start to READY=1 (wall), first start",
        "first_ready_cpu_ms": "agent run: CPU used by READY=1, first start (+ check child)",
        "version_ms": "edgecascade --version",
        "python_ms": "python -c pass (the interpreter's own start-up)",
    }
    print(
        f"{ns.runs} runs each; median (min, max); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for name, label in labels.items():
        unit = "ms" if name.endswith("_ms") else "MiB"
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            met = statistics.median(results[name]) <= target
            verdict = f"  target <= {target:g} {unit}: {'met' if met else 'NOT met'}"
        print(f"  {label:62s} {_fmt(results[name], unit)}{verdict}")
    median = {name: statistics.median(values) for name, values in results.items()}
    for floor in ("floor", "floor_pydantic"):
        ready, base = median["ready_ms"], median[f"{floor}_ms"]
        print(f"  start to READY=1 over {floor}'s start: {ready / base:.2f}x (+{ready - base:.0f} ms)")
    for floor in ("floor", "floor_pydantic"):
        peak, base = median["predict_litert_mib"], median[f"{floor}_mib"]
        print(f"  agent predict over {floor}'s peak: {peak / base:.2f}x (+{peak - base:.1f} MiB)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MiB
    print(f"  (this script's own peak, below which no figure can read: {own:.1f} MiB)")
    versions = ", ".join(f"{p} {_version(p)}" for p in KEY_PACKAGES)
    print(f"python {sys.version.split()[0]}; {versions}")
    return 0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
