"""Disentanglement metrics of one checkpoint beside the extract stage of the same checkpoint.

Both sides use one conv VAE (the paper's network, Locatello et al. 2019) on
``dsprites-procedural``:

* **extract**: what the study's extract stage does for a checkpoint:
  ``extract_activations`` of every layer on a probe set of ``--probe-n``
  images, then ``summarise`` of every layer (CKA + Procrustes summaries).
* **metrics**: :func:`vaesim.metrics.evaluate_disentanglement` at
  disentanglement_lib's protocol sizes (``num_train`` 10,000, ``num_test``
  5,000, batches of 64; BetaVAE and FactorVAE encode 64-image batches for
  every point: about 2.9 M images in total), timed per metric; DCI fits
  scikit-learn's ``GradientBoostingClassifier`` (defaults) per factor.

Reported: seconds of each side, per-metric seconds, and the ratio
metrics / extract. Timings depend on the load; the two sides run back to
back in one process.

    python benchmarks/metrics.py [--probe-n 2000] [--fraction 1.0] [--json out.json]

``--fraction`` scales the protocol sizes; every metric's cost is linear in
them (encoded images for BetaVAE / FactorVAE, training points for the
classifiers), so the protocol cost is estimated as cost / fraction and
printed beside the measured one. The untrained network's mean layer is
rescaled to unit spread (weights do not change the cost, but FactorVAE
prunes codes with standard deviation < 0.05 and would skip its work).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-n", type=int, default=2000, help="probe images of the extract stage (paper: 10000)")
    parser.add_argument("--fraction", type=float, default=1.0, help="scale of the protocol sizes (1.0 = protocol)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args()

    import torch

    from vaesim.activations import extract_activations
    from vaesim.data import get_dataset, make_probe_set
    from vaesim.metrics import METRIC_NAMES, Protocol, evaluate_disentanglement, model_factor_codes
    from vaesim.models import build_vae
    from vaesim.similarity import summarise

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dataset = get_dataset("dsprites-procedural")
    model = build_vae(num_channels=dataset.num_channels).eval()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; torch threads {torch.get_num_threads()}")

    probe = make_probe_set(dataset, args.probe_n, 0)
    with torch.no_grad():  # an untrained encoder's means have std << 0.05, and FactorVAE would prune every
        # code and skip its votes: rescale the mean layer to unit spread so that every metric does its full work
        images = torch.from_numpy(np.asarray(probe.images[:256], dtype=np.float32))
        spread = float(model.encode(images)[0].std(0).mean())
        model.encoder.mean.weight.mul_(1.0 / spread)
        model.encoder.mean.bias.mul_(1.0 / spread)
    start = time.perf_counter()
    activations = extract_activations(model, probe.images, seed=0)
    recorded = time.perf_counter() - start
    summaries = {name: summarise(x, name=name, metrics=("cka", "procrustes")) for name, x in activations.items()}
    extract_seconds = time.perf_counter() - start
    del summaries, activations
    print(f"extract stage, n={args.probe_n}: {extract_seconds:.1f} s (forward {recorded:.1f} s)")

    protocol = Protocol().scaled(args.fraction) if args.fraction < 1 else Protocol()
    truth = model_factor_codes(dataset, model)
    per_metric = {}
    groups = [("beta_vae",), ("factor_vae",), ("mig",), ("sap",),
              ("dci_disentanglement", "dci_completeness", "dci_informativeness"), ("modularity", "explicitness")]
    values = {}
    for group in groups:
        start = time.perf_counter()
        values.update(evaluate_disentanglement(truth, seed=0, protocol=protocol, metrics=group))
        per_metric["+".join(group) if len(group) == 1 else group[0].split("_")[0]] = time.perf_counter() - start
        print(f"  {group[0]:>20}: {per_metric[list(per_metric)[-1]]:8.1f} s")
    metrics_seconds = sum(per_metric.values())
    assert set(values) == set(METRIC_NAMES)
    load = os.getloadavg()
    print(f"metrics at protocol x {args.fraction:g}: {metrics_seconds:.1f} s")
    print(f"ratio metrics / extract: {metrics_seconds / extract_seconds:.2f}")
    if args.fraction < 1:
        print(f"estimated at the protocol sizes (/ {args.fraction:g}): {metrics_seconds / args.fraction:.0f} s, "
              f"ratio {metrics_seconds / args.fraction / extract_seconds:.1f}")
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("values (untrained network):", {k: round(v, 3) for k, v in values.items()})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"probe_n": args.probe_n, "fraction": args.fraction, "extract_s": extract_seconds,
                       "metrics_s": metrics_seconds, "per_metric_s": per_metric, "values": values,
                       "ratio": metrics_seconds / extract_seconds}, handle, indent=1)


if __name__ == "__main__":
    main()
