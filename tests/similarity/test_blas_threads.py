"""The BLAS thread count inside vaesim's parallel work: one per call, whichever thread runs it.

OpenBLAS takes a new thread count only from the thread that set up its thread
server, and a LAPACK call that finds the server busy runs with another
blocking: two overlapping summaries of the same layer gave R factors a few ulps
apart, and a study's stored summaries differed from a rerun's (issue 33,
found through the keep/cache/planned bit-identity tests under load).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_work_handed_to_the_pool_threads_runs_its_blas_on_one_thread():
    from vaesim.utils.threads import parallel_map

    seen = parallel_map(lambda _item: _blas_threads(), list(range(8)), threads=2)
    assert all(counts and set(counts) == {1} for counts in seen), seen


def test_overlapping_tall_skinny_qrs_equal_one_alone_bit_for_bit():
    from vaesim.similarity.tsqr import qr_r
    from vaesim.utils.threads import parallel_map

    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((64, 32_768)), 0.0)  # a ReLU layer as wide as the paper's first deconv
    xc = x - x.mean(axis=0)
    alone = qr_r(xc, threads=1)
    for _ in range(10):
        for r in parallel_map(lambda _item: qr_r(xc, threads=1), [0, 1], threads=2):
            assert np.array_equal(r, alone)


def test_a_task_limit_entered_before_scipy_is_imported_still_reaches_scipys_blas():
    # a study task enters thread_limit before its stage imports vaesim.similarity (and with it scipy.linalg,
    # which loads its own OpenBLAS): that library must be limited too
    code = textwrap.dedent("""
        import numpy
        from vaesim.utils.threads import thread_limit
        assert "scipy.linalg" not in __import__("sys").modules
        with thread_limit(2):
            import scipy.linalg
            from threadpoolctl import threadpool_info
            print(sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1]", out.stdout
