"""Run refdet's benchmarks: ``python -m benchmarks.run [area ...] [--json FILE]``.

Prints refdet against torchvision/torch (same process, 1 thread, medians of 7) and against the
machine's limit (memory-bandwidth floor or GEMM throughput). Areas are the ``bench_<area>.py`` files.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
# Some machines pin OpenBLAS to an older core type (OPENBLAS_CORETYPE=Haswell, for old OpenBLAS builds
# that miscompute on newer cores). It slows a current NumPy's GEMMs by ~1.6x on AVX-512 machines, so
# the benchmarks run with the library's own choice; REFDET_BENCH_KEEP_CORETYPE=1 keeps the pin. The
# kernel in use is printed first. (Tests and CI never change these variables.)
if os.environ.get("REFDET_BENCH_KEEP_CORETYPE") != "1":
    os.environ.pop("OPENBLAS_CORETYPE", None)
    os.environ.pop("OPENBLAS_L2_SIZE", None)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402

import benchmarks  # noqa: E402
from benchmarks._harness import run  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("areas", nargs="*", help="bench_<area>.py files to run (default: all)")
    p.add_argument("--json", help="also write the results to this file")
    a = p.parse_args(argv)
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__)
                   if m.name.startswith("bench_"))
    chosen = a.areas or names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        p.error(f"unknown areas {unknown}; known: {names}")
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info()
                if i.get("user_api") == "blas"]
        print("BLAS:", ", ".join(blas) or "unknown")
    except ImportError:
        pass
    results = []
    for area in chosen:
        mod = importlib.import_module(f"benchmarks.bench_{area}")
        print(f"\n== {area} ==")
        results += run(mod.BENCHMARKS)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
