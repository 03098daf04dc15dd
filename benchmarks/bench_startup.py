"""What a user waits for: whole-process times of `jaxprune` commands, cold and warm compilation cache, side by
side with the C++ reference tool sgoldt/nn2pp (issue 18).

    python benchmarks/bench_startup.py                  # ode x2, simulate, imports; 3 repeats (tens of minutes on 2 busy cores)
    python benchmarks/bench_startup.py --quick          # 1 repeat, no simulate
    python benchmarks/bench_startup.py --reproduce      # also `jaxprune reproduce --quick --force` (slow)
    python benchmarks/bench_startup.py --json OUT.json  # also write every number

Cases (every one a fresh process, as a user runs it):
- `jaxprune ode --M 2 --K 6 --alpha 1000` (eta 0.5) vs `scmpp_ode.exe -M 2 -K 6 --lr 0.5 --steps 1000`,
- `jaxprune ode --M 4 --K 16 --eta 0.1 --alpha 100` vs `scmpp_ode.exe -M 4 -K 16 --lr 0.1 --steps 100`,
- `jaxprune simulate --N 500 --M 2 --K 6 --alpha 1000` vs `nn2pp.exe -N 500 -M 2 -K 6 --lr 0.5 --steps 1000`,
- `jaxprune reproduce --quick --force` (with `--reproduce`),
- `python -c "import jax"` and `python -c "import jaxprune"` (start-up floor).
"Cold" runs start from an empty cache folder (and fill it); "warm" runs reuse a folder filled by one earlier
run; "off" runs use `--no-compile-cache`. Repeats are interleaved (cold, warm, off, C++ in turn) so that the
shared machine's load falls on all alike. Reported: medians of wall seconds and of CPU seconds (user + system
of the process and its children). The C++ tool (Euler, dt = 0.01; OpenMP) is built from the source snapshot
into a temporary folder with `g++ -O3 -fopenmp ... -larmadillo` when g++, Armadillo and the snapshot are found
(`--nn2pp-src DIR`, a git dir or a source folder); otherwise its rows say why they were skipped. Its code is
never copied into this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NN2PP_GIT = Path("/work/.mirror/sgoldt+nn2pp/repo")  # a bare git dir holding the tool's source snapshot
GOALS = {  # issue 18, warm cache
    "ode_M2_K6": ("jaxprune warm / C++", 1.0, "<="),
    "ode_M4_K16": ("C++ / jaxprune warm", 5.0, ">="),
    "reproduce_quick": ("warm / cold", 0.5, "<="),
}


def _cases(args) -> list[dict]:
    jp = [sys.executable, "-m", "jaxprune.cli"]
    cases = [
        {"name": "ode_M2_K6", "cmd": jp + ["ode", "--M", "2", "--K", "6", "--eta", "0.5", "--alpha", "1000", "--quiet"],
         "cpp": ("scmpp_ode", ["-M", "2", "-K", "6", "--lr", "0.5", "--steps", "1000", "--dt", "0.01", "--quiet"])},
        {"name": "ode_M4_K16", "cmd": jp + ["ode", "--M", "4", "--K", "16", "--eta", "0.1", "--alpha", "100", "--quiet"],
         "cpp": ("scmpp_ode", ["-M", "4", "-K", "16", "--lr", "0.1", "--steps", "100", "--dt", "0.01", "--quiet"])},
    ]
    if not args.quick:
        cases.append({"name": "simulate_N500_M2_K6",
                      "cmd": jp + ["simulate", "--N", "500", "--M", "2", "--K", "6", "--alpha", "1000", "--quiet"],
                      "cpp": ("nn2pp", ["-N", "500", "-M", "2", "-K", "6", "--lr", "0.5", "--steps", "1000",
                                        "--quiet"])})
    if args.reproduce:
        cases.append({"name": "reproduce_quick", "cmd": jp + ["reproduce", "--quick", "--force", "--quiet"],
                      "out": True, "cpp": None})
    return cases


def run_timed(cmd: list[str], env: dict, cwd: Path, timeout: float) -> dict:
    """Run one process; wall seconds, CPU seconds (it and its children) and return code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, "timed out"
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rc": rc, "tail": tail}


def build_nn2pp(src: Path, into: Path) -> tuple[dict[str, Path], str]:
    """Build `scmpp_ode.cpp` and `nn2pp.cpp` into `into`; returns ({name: exe}, why-not message)."""
    gxx = shutil.which("g++")
    if gxx is None:
        return {}, "g++ not found"
    if not Path("/usr/include/armadillo").exists():
        return {}, "Armadillo headers not found (Debian: apt-get install libarmadillo-dev)"
    code = into / "src"
    code.mkdir(parents=True, exist_ok=True)
    if (src / "HEAD").exists() and not (src / "scmpp_ode.cpp").exists():  # a bare git dir
        archive = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD"], capture_output=True)
        if archive.returncode != 0:
            return {}, f"git archive of {src} failed"
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    elif (src / "scmpp_ode.cpp").exists():
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, code / f.name)
    else:
        return {}, f"nn2pp source not found at {src} (pass --nn2pp-src)"
    exes = {}
    for name in ("scmpp_ode", "nn2pp"):
        exe = into / f"{name}.exe"
        proc = subprocess.run([gxx, "-std=c++11", "-O3", "-fopenmp", "-o", str(exe), str(code / f"{name}.cpp"),
                               "-larmadillo"], capture_output=True, text=True)
        if proc.returncode != 0:
            return {}, f"building {name}.cpp failed: {proc.stderr.strip().splitlines()[-1:]}"
        exes[name] = exe
    return exes, ""


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r["rc"] == 0]
    return statistics.median(vals) if vals else None


def _fmt(x: float | None) -> str:
    return "   -   " if x is None else f"{x:7.2f}"


def phase_breakdown(cmd: list[str], env: dict, cwd: Path, timeout: float) -> dict:
    """One run with JAX's compile log: seconds spent tracing, lowering to MLIR and in XLA compilation (or
    loading from the cache), and the number of programs, parsed from the log lines."""
    env = dict(env, JAX_LOG_COMPILES="1", JAX_EXPLAIN_CACHE_MISSES="1")
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = {"tracing": 0.0, "lowering": 0.0, "compile_or_load": 0.0, "programs": 0, "cache_hits": 0,
           "uncacheable": []}
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.search(r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation) .*? in ([0-9.e+-]+) sec",
                      line)
        if m:
            kind = {"tracing": "tracing", "XLA compilation": "compile_or_load"}.get(m.group(1), "lowering")
            out[kind] += float(m.group(2))
            out["programs"] += m.group(1) == "XLA compilation"
        out["cache_hits"] += "Persistent compilation cache hit" in line
        m = re.search(r"Not writing persistent cache entry for '([^']+)' because it uses host callbacks", line)
        if m:
            out["uncacheable"].append(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repeat; ode cases only")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 3; --quick 1)")
    ap.add_argument("--reproduce", action="store_true", help="also time `jaxprune reproduce --quick --force`")
    ap.add_argument("--no-cpp", action="store_true", help="skip the C++ reference tool")
    ap.add_argument("--no-off", action="store_true", help="skip the runs without a cache")
    ap.add_argument("--nn2pp-src", type=Path, default=NN2PP_GIT, help="nn2pp source (git dir or folder)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="jaxprune-bench-startup-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXPRUNE_CACHE"))}
    base_env["PYTHONPATH"] = str(ROOT) + os.pathsep + base_env.get("PYTHONPATH", "")
    print(f"# bench_startup: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; {repeats} repeat(s); medians; wall s / CPU s")
    exes, why = ({}, "--no-cpp") if args.no_cpp else build_nn2pp(args.nn2pp_src, work / "nn2pp")
    if why:
        print(f"# C++ reference tool skipped: {why}")
    results: dict = {"repeats": repeats, "cpu_count": os.cpu_count(), "cpp_skipped": why or None, "cases": {}}
    try:
        # start-up floor: importing jax, importing jaxprune
        floor = {"import_jax": [sys.executable, "-c", "import jax"],
                 "import_jaxprune": [sys.executable, "-c", "import jaxprune"]}
        for name, cmd in floor.items():
            rows = [run_timed(cmd, base_env, work, args.timeout) for _ in range(repeats)]
            results["cases"][name] = {"plain": rows}
            print(f"{name:22s} {_fmt(_median(rows, 'wall'))} / {_fmt(_median(rows, 'cpu'))}")
        for case in _cases(args):
            name = case["name"]
            warm_dir = work / f"{name}-warm"
            env_warm = dict(base_env, JAXPRUNE_CACHE_DIR=str(warm_dir))
            outdir = ["--out", str(work / f"{name}-out")] if case.get("out") else []
            fill = run_timed(case["cmd"] + outdir, env_warm, work, args.timeout)  # fills the warm cache
            if fill["rc"] != 0:
                print(f"{name}: FAILED (rc {fill['rc']}): {fill['tail'][-400:]}")
                results["cases"][name] = {"error": fill["tail"]}
                continue
            rows: dict[str, list] = {"cold": [], "warm": [], "off": [], "cpp": []}
            for r in range(repeats):
                cold_dir = work / f"{name}-cold-{r}"
                rows["cold"].append(run_timed(case["cmd"] + outdir, dict(base_env, JAXPRUNE_CACHE_DIR=str(cold_dir)),
                                              work, args.timeout))
                shutil.rmtree(cold_dir, ignore_errors=True)
                rows["warm"].append(run_timed(case["cmd"] + outdir, env_warm, work, args.timeout))
                if not args.no_off:
                    off = case["cmd"][:3] + ["--no-compile-cache"] + case["cmd"][3:] + outdir
                    rows["off"].append(run_timed(off, base_env, work, args.timeout))
                if case.get("cpp") and case["cpp"][0] in exes:
                    cpp_cwd = work / "cpp-run"
                    cpp_cwd.mkdir(exist_ok=True)
                    rows["cpp"].append(run_timed([str(exes[case["cpp"][0]])] + case["cpp"][1], base_env, cpp_cwd,
                                                 args.timeout))
            med = {k: {"wall": _median(v, "wall"), "cpu": _median(v, "cpu")} for k, v in rows.items() if v}
            bad = {k: [x["tail"][-300:] for x in v if x["rc"] != 0] for k, v in rows.items()}
            entry = {"median": med, "runs": {k: [{kk: x[kk] for kk in ("wall", "cpu", "rc")} for x in v]
                                             for k, v in rows.items()},
                     "failures": {k: v for k, v in bad.items() if v},
                     "breakdown_warm": phase_breakdown(case["cmd"] + outdir, env_warm, work, args.timeout)}
            line = f"{name:22s}" + "".join(f" {k} {_fmt(m['wall'])} / {_fmt(m['cpu'])} |" for k, m in med.items())
            print(line)
            b = entry["breakdown_warm"]
            print(f"{'':22s} warm run: tracing {b['tracing']:.2f} s, lowering {b['lowering']:.2f} s, compile or load "
                  f"{b['compile_or_load']:.2f} s; {b['programs']} programs, {b['cache_hits']} cache hits; "
                  f"never cached (host callbacks): {sorted(set(b['uncacheable'])) or 'none'}")
            entry["goal"] = _goal(name, med)
            if entry["goal"]:
                print(f"{'':22s} {entry['goal']['line']}")
            for k, v in entry["failures"].items():
                print(f"{'':22s} {k} FAILED: {v[0]!r}")
            results["cases"][name] = entry
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"# wrote {args.json}")
    return 0


def _goal(name: str, med: dict) -> dict | None:
    """The issue's goal for this case as a ratio of wall-clock medians (CPU ratio beside it)."""
    if name not in GOALS:
        return None
    what, goal, sense = GOALS[name]
    if name == "reproduce_quick":
        num, den = med.get("warm"), med.get("cold")
    elif "cpp" not in med:
        return {"line": f"goal ({what} {sense} {goal:g}): C++ tool not run", "met": None}
    elif sense == "<=":
        num, den = med.get("warm"), med.get("cpp")
    else:
        num, den = med.get("cpp"), med.get("warm")
    if not (num and den and num["wall"] and den["wall"]):
        return {"line": f"goal ({what} {sense} {goal:g}): missing numbers", "met": None}
    ratio, cpu_ratio = num["wall"] / den["wall"], num["cpu"] / den["cpu"]
    met = ratio <= goal if sense == "<=" else ratio >= goal
    cold = ""
    if name != "reproduce_quick" and med.get("cold"):
        cpp, cold_wall = med["cpp"]["wall"], med["cold"]["wall"]
        c = cold_wall / cpp if sense == "<=" else cpp / cold_wall
        cold = f"; cold cache: {c:.2f}"
    return {"what": what, "ratio_wall": ratio, "ratio_cpu": cpu_ratio, "goal": goal, "sense": sense, "met": met,
            "line": f"goal {what} {sense} {goal:g}: {ratio:.2f} wall ({cpu_ratio:.2f} CPU){cold} -> "
                    f"{'MET' if met else 'NOT MET'}"}


if __name__ == "__main__":
    sys.exit(main())
