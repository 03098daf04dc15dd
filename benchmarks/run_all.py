"""Run every benchmark and write one summary JSON (one command for a run on another machine, e.g. a GPU).

    python benchmarks/run_all.py --json OUT.json            # every benchmark, full sizes
    python benchmarks/run_all.py --json OUT.json --quick    # their quick modes (smoke run)
    python benchmarks/run_all.py --json OUT.json --only bench_ode bench_startup

Each `benchmarks/bench_*.py` runs in its own process, in turn (never side by side: they time themselves), with
its quick flags under `--quick` (`QUICK_ARGS`). The summary holds the machine (CPU, cores, load, JAX's devices
and, where `nvidia-smi` answers, the GPU's name), JAX's version, and per benchmark: the command, exit code, wall
and CPU seconds, the lines that state a goal (MET / NOT MET) and the end of its output; `bench_startup` also
writes its own JSON, included whole. The benchmarks run without a persistent compilation cache (JAX's cache
variables are removed from their environment), so the compile times they report are cold ones;
`bench_startup` measures the cache itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# quick-mode arguments of the benchmarks that have no `--quick` flag of their own
QUICK_ARGS = {
    "bench_dpp": ["--repeats", "2"],
    "bench_node": ["--repeats", "1", "--loop-subsets", "300", "--K-closed", "100"],
    "bench_realdata": ["--repeats", "1"],
}


def benchmarks() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def quick_args(name: str) -> list[str]:
    if name in QUICK_ARGS:
        return list(QUICK_ARGS[name])
    return ["--quick"] if '"--quick"' in (HERE / f"{name}.py").read_text() else []


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
            "load_before": os.getloadavg()[0]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        if smi.returncode == 0 and smi.stdout.strip():
            info["gpus"] = [g.strip() for g in smi.stdout.strip().splitlines()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    probe = subprocess.run([sys.executable, "-c", "import jax, jaxlib; print(jax.__version__, jaxlib.__version__);"
                            "print(jax.default_backend()); print([str(d) for d in jax.devices()])"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode == 0:
        versions, backend, devices = probe.stdout.strip().splitlines()[-3:]
        info.update(jax=versions.split()[0], jaxlib=versions.split()[1], backend=backend, devices=devices)
    return info


def run_one(name: str, extra: list[str], env: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(HERE / f"{name}.py")] + extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + ("\n[stderr]\n" + proc.stderr if proc.stderr.strip() else "")
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += f"\n[timed out after {timeout:.0f} s]"
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    goals = [ln.strip() for ln in out.splitlines() if "MET" in ln or "goal" in ln.lower()]
    return {"command": " ".join(cmd[1:]), "rc": rc, "wall_seconds": round(wall, 2),
            "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "goal_lines": goals, "output_tail": out[-6000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True, help="summary file to write")
    ap.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"run only these ({', '.join(benchmarks())})")
    ap.add_argument("--skip", nargs="+", default=(), metavar="NAME", help="leave these out")
    ap.add_argument("--startup-reproduce", action="store_true",
                    help="bench_startup also times `jaxprune reproduce --quick --force` (slow)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark (default 3600)")
    args = ap.parse_args()
    names = benchmarks()
    unknown = sorted((set(args.only or ()) | set(args.skip)) - set(names))
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; they are {names}")
    names = [n for n in names if (args.only is None or n in args.only) and n not in args.skip]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE",
                                                                    "JAX_ENABLE_COMPILATION_CACHE"))}
    env["JAXPRUNE_CACHE_DIR"] = "off"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    summary = {"format": 1, "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "benchmarks": {}}
    print(f"# {summary['machine'].get('cpu', platform.machine())}, {os.cpu_count()} cores, "
          f"devices {summary['machine'].get('devices', '?')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="jaxprune-run-all-") as tmp:
        for name in names:
            extra = quick_args(name) if args.quick else []
            startup_json = None
            if name == "bench_startup":
                startup_json = Path(tmp) / "startup.json"
                extra += ["--json", str(startup_json)] + (["--reproduce"] if args.startup_reproduce else [])
            print(f"== {name} {' '.join(extra)}", flush=True)
            res = run_one(name, extra, env, args.timeout)
            if startup_json is not None and startup_json.exists():
                res["results"] = json.loads(startup_json.read_text())
            summary["benchmarks"][name] = res
            print(f"   rc {res['rc']}, {res['wall_seconds']:.0f} s wall, {res['cpu_seconds']:.0f} s CPU", flush=True)
            for line in res["goal_lines"]:
                print(f"   {line}", flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(summary, indent=1))  # after each benchmark: a partial run is kept
    summary["machine"]["load_after"] = os.getloadavg()[0]
    args.json.write_text(json.dumps(summary, indent=1))
    failed = [n for n, r in summary["benchmarks"].items() if r["rc"] != 0]
    print(f"# wrote {args.json}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
