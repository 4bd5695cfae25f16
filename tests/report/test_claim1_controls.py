"""Claim 1's controls on real networks (issue 19 item 2): each half's own learning, measured with its input fixed.

Eight "runs", each a path in weight space from an untrained VAE (W0) to a changed one (W1: every weight
matrix plus a strong rank-one term (3x its norm, rescaled to the norm it had), which reshapes what every layer represents; two random
initialisations alone would not, their layers' CKA is near 1): at checkpoint t the encoder's weights are
W0 + a_enc(t) (W1 - W0) and the decoder's W0 + a_dec(t) (W1 - W0), so which half reaches its final
state first is known by construction. Encoder layers are recorded from the
probe images; decoder layers on the final checkpoint's mean code (``probe.decoder_input: final_mean``),
as a study records them. The rows are those a study stores (``within_run`` against the final step, and
step-0 ``seeds`` rows that set the per-metric settle threshold).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from synthetic_store import RESULT_COLUMNS

from vaesim.activations import extract_activations, mean_code, noise_seed
from vaesim.models import LAYER_NAMES, build_vae
from vaesim.report.settling import claim_encoder_first, convergence_table
from vaesim.report.verdicts import HOLDS, OPPOSITE_HOLDS
from vaesim.similarity import linear_cka
from vaesim.utils.threads import thread_limit

STEPS = (0, 10, 20, 40, 80)
RUNS = 8
LAYERS = tuple(name for name in LAYER_NAMES if name != "input")


def jump(step: int) -> float:
    """Reaches the final weights at the first learned checkpoint."""
    return 0.0 if step == 0 else 1.0


def linear(step: int) -> float:
    return step / STEPS[-1]


def frozen(step: int) -> float:
    return 0.0


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return (rng.random((64, 1, 64, 64)) < 0.15).astype(np.float32)


def network(seed: int):
    torch.manual_seed(seed)
    return build_vae(num_channels=1, latent_dim=10)


def changed(start, seed: int):
    """``start`` with a rank-one term 3 ||W|| g h^T added to every weight (g over outputs, h over inputs), norm kept."""
    model = network(0)
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, value in start.state_dict().items():
        if key.endswith("weight") and value.ndim >= 2:
            flat = value.reshape(value.shape[0], -1)
            g = torch.randn(flat.shape[0], 1, generator=generator)
            h = torch.randn(1, flat.shape[1], generator=generator)
            term = g @ h
            boosted = flat + 3.0 * flat.norm() * term / term.norm()
            flat = boosted * (flat.norm() / boosted.norm())  # the same norm: activations keep their scale
            value = flat.reshape(value.shape)
        weights[key] = value
    model.load_state_dict(weights)
    return model


def on_path(start, end, encoder: float, decoder: float):
    model = network(0)
    a, b = start.state_dict(), end.state_dict()
    weights = {}
    for key in a:
        share = encoder if key.startswith("encoder.") else decoder if key.startswith("decoder.") else 0.0
        weights[key] = a[key] + share * (b[key] - a[key])
    model.load_state_dict(weights)
    return model


def row(run: int, step: int, layer: str, b_run: int, b_step: int, score: float, comparison: str) -> dict:
    side = lambda r, s: {"run": f"run-{r}", "objective": "beta_vae", "param_name": "beta", "param": 4.0,  # noqa: E731
                         "seed": r, "step": s, "layer": layer}
    values = {"dataset": "dsprites-procedural", "comparison": comparison, "metric": "cka", "n": 64,
              "score": float(score), "note": ""}
    values.update({f"a_{k}": v for k, v in side(run, step).items()})
    values.update({f"b_{k}": v for k, v in side(b_run, b_step).items()})
    return values


def store(images, encoder_share, decoder_share, *, decoder_input: str = "final_mean"):
    """The ``within_run``, ``noise_floor`` and step-0 ``seeds`` rows of the eight runs, as a results table.

    Small products on one thread (torch and BLAS), as a study task runs them: on a shared CPU a 2-thread
    BLAS call this small waits for a parked thread far longer than it computes.
    """
    with thread_limit(1):
        return _store(images, encoder_share, decoder_share, decoder_input)


def _store(images, encoder_share, decoder_share, decoder_input):
    import pandas as pd

    rows, initial = [], {}
    for run in range(RUNS):
        start = network(10 + run)
        end = changed(start, 100 + run)
        final = on_path(start, end, encoder_share(STEPS[-1]), decoder_share(STEPS[-1]))
        code = mean_code(final, images) if decoder_input == "final_mean" else None
        recorded = {step: extract_activations(on_path(start, end, encoder_share(step), decoder_share(step)), images,
                                              layers=LAYERS, seed=noise_seed(0, f"run-{run}", step),
                                              decoder_code=code)
                    for step in STEPS}
        initial[run] = recorded[0]
        for step in STEPS[1:]:  # the sampled layer's noise floor at every learned checkpoint (a second eps)
            again = extract_activations(on_path(start, end, encoder_share(step), decoder_share(step)), images,
                                        layers=("encoder.sample",), seed=noise_seed(0, f"run-{run}/resampled", step))
            rows.append(row(run, step, "encoder.sample", run, step,
                            linear_cka(recorded[step]["encoder.sample"], again["encoder.sample"]), "noise_floor"))
        for step in STEPS[:-1]:
            rows += [row(run, step, layer, run, STEPS[-1],
                         linear_cka(recorded[step][layer], recorded[STEPS[-1]][layer]), "within_run")
                     for layer in LAYERS]
    for a, b in itertools.combinations(range(RUNS), 2):  # untrained networks of different seeds: the threshold
        rows += [row(a, 0, layer, b, 0, linear_cka(initial[a][layer], initial[b][layer]), "seeds")
                 for layer in LAYERS]
    return pd.DataFrame(rows)[RESULT_COLUMNS]


def test_encoder_first_by_construction_holds(images):
    finding = claim_encoder_first(store(images, jump, linear))
    assert finding["verdict"] == HOLDS, finding
    assert finding["value"] > 0 and finding["n"] >= 6  # a run whose decoder the construction left unchanged drops out


def test_decoder_first_by_construction_is_the_opposite(images):
    finding = claim_encoder_first(store(images, linear, jump))
    assert finding["verdict"] == OPPOSITE_HOLDS, finding
    assert finding["value"] < 0


def test_a_frozen_decoder_is_not_changed_and_the_claim_does_not_hold(images):
    results = store(images, linear, frozen)
    table = convergence_table(results)
    decoder = table[table["group"] == "decoder"]
    assert len(decoder) and not decoder["changed"].astype(bool).any()  # scored 1 against its final state
    assert claim_encoder_first(results)["verdict"] not in (HOLDS, OPPOSITE_HOLDS)


def test_a_frozen_decoder_fed_its_own_sample_looks_changed_which_is_why_the_code_is_held_fixed(images):
    # the audit's finding: on the model's own sample (fresh eps, a drifting encoder) a decoder that never
    # moved looks "changed by training" and gets settle points
    table = convergence_table(store(images, linear, frozen, decoder_input="sample"))
    decoder = table[table["group"] == "decoder"]
    assert decoder["changed"].astype(bool).any()


def test_a_frozen_encoder_is_not_changed_and_the_claim_does_not_hold(images):
    results = store(images, frozen, linear)
    table = convergence_table(results)
    trunk = table[(table["group"] == "encoder") & (table["layer"] != "encoder.sample")]
    assert len(trunk) and not trunk["changed"].astype(bool).any()
    assert claim_encoder_first(results)["verdict"] not in (HOLDS, OPPOSITE_HOLDS)
