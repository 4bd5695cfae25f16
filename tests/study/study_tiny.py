"""The tiny study grid the tests share, and expected counts derived from a spec by hand."""

from __future__ import annotations

from math import comb

# The layers the tiny study compares (the small ones, to keep the tests fast), in model order.
LAYERS = ["encoder.conv4", "encoder.fc", "encoder.mean", "encoder.logvar", "encoder.sample", "decoder.fc1",
          "decoder.fc2", "decoder.deconv1"]
# Layers whose float32 activations the tiny study keeps for spot checks.
KEPT_LAYERS = ["encoder.conv4", "encoder.mean", "encoder.sample", "decoder.fc1"]

TINY = {
    "name": "tiny",
    "datasets": ["dsprites-procedural"],
    "objectives": [
        {"name": "beta_vae", "values": [1, 8]},
        {"name": "dip_vae_ii", "values": [1, 10]},
    ],
    "seeds": [0, 1],
    "training": {
        "steps": 20,
        "batch_size": 16,
        "checkpoints": {"schedule": "even", "count": 3},
        "log_every": 5,
        "monitor_every": 10,
    },
    "probe": {"n": 64, "seed": 0},
    "metrics": ["cka", "procrustes"],
    "layers": LAYERS,
    "keep_activations": KEPT_LAYERS,
    "device": "cpu",
}


def expected_pairs(spec) -> dict[str, int]:
    """Model pairs per comparison type, counted from the grid by hand."""
    objectives = len(spec.objectives)
    values = len(spec.objectives[0].values)  # every objective of the tiny grid has the same count
    seeds, steps = len(spec.seeds), len(spec.recorded_steps())
    runs = objectives * values * seeds * len(spec.datasets)
    return {
        "within_run": runs * comb(steps + 1, 2),  # s_i <= s_j, itself included
        "seeds": objectives * values * steps * comb(seeds, 2),
        "params": objectives * seeds * steps * comb(values, 2),
        "objectives": seeds * steps * comb(objectives, 2) * values**2,
        "factors": runs * steps,
        "noise_floor": runs,  # each run's final checkpoint against itself recorded with a second eps
    }
