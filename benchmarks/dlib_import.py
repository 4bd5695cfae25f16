"""Cost per model of `vaesim import dlib`: one published-layout model (TensorFlow-written fixture) imported K times.

    python benchmarks/dlib_import.py [--repeat K]

Prints the wall time per model split into reading the zip + checking every CRC-32C, mapping, and writing the run,
and the peak resident memory. The fixture holds dlib's conv VAE with its Adam slots (81 tensors, 8.4 MB unzipped),
as every published model does.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "imports" / "fixtures" / "dlib" / "1234.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from vaesim.imports.dlib import import_dlib, read_dlib_model, to_imported_run
    from vaesim.imports.runs import write_imported_run
    from vaesim.utils import sha256_file

    work = Path(tempfile.mkdtemp())
    try:
        read_s = map_s = write_s = 0.0
        for i in range(args.repeat):
            t0 = time.perf_counter()
            digest = sha256_file(FIXTURE)
            model = read_dlib_model(FIXTURE, work / "scratch")
            t1 = time.perf_counter()
            run, weights = to_imported_run(model, FIXTURE, digest)
            t2 = time.perf_counter()
            write_imported_run(work / f"out{i}", run, {run.steps: weights})
            t3 = time.perf_counter()
            read_s, map_s, write_s = read_s + t1 - t0, map_s + t2 - t1, write_s + t3 - t2
        start = time.perf_counter()
        for i in range(args.repeat):
            import_dlib(FIXTURE, work / f"whole{i}", progress=False)
        whole = (time.perf_counter() - start) / args.repeat
        k = args.repeat
        print(f"per model: read + verify {1e3 * read_s / k:.1f} ms, map {1e3 * map_s / k:.1f} ms, "
              f"write {1e3 * write_s / k:.1f} ms; whole import_dlib call {1e3 * whole:.1f} ms")
        print(f"1,800 models (one dataset of unsupervised_study_v1): {1800 * whole / 60:.1f} min; "
              f"10,800: {10800 * whole / 60:.1f} min (one process)")
        print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
              f"run folder {sum(p.stat().st_size for p in (work / 'whole0').rglob('*') if p.is_file()) / 1e6:.2f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
