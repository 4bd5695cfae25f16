"""The report of a real (tiny) study shows the models: reconstructions, traversals, training curves, factors."""

from __future__ import annotations

import re

import pytest

from vaesim.report import write_report


@pytest.mark.slow
def test_report_of_a_real_study_has_model_pictures_training_and_factors(tiny_copy):
    page = write_report(tiny_copy).read_text()
    drawn = set(re.findall(r"<figure id='fig-([^']+)'><a [^>]*><img", page))  # each links its full-size file
    # one traversal per (objective, value): 2 x 2 models, lowest seed each
    assert {"reconstructions", "traversals_over_training", "training_curves", "kl_per_dimension",
            "factors", "traversal_00", "traversal_03"} <= drawn
    assert "traversal_04" not in drawn
    assert "Latent traversals per model" in page
    for name in ("reconstructions", "traversal_00", "factors", "training_curves"):
        assert (tiny_copy / "figures" / f"{name}.png").is_file()


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_report_draws_nothing_from_a_probe_or_checkpoint_that_fails_its_checksum(tiny_copy, caplog):
    from vaesim.cli import main
    from vaesim.report import pictures

    pictures._refused.clear()
    probe = tiny_copy / "probes" / "dsprites-procedural.npz"
    _flip_last_byte(probe)  # the sidecar stays: the bytes no longer match it
    first_model = sorted((tiny_copy / "runs").glob("*_beta_vae_beta=1_seed=0_*"))[0]  # traversal_00's run
    final = sorted((first_model / "checkpoints").glob("step_*.safetensors"))[-1]
    final.unlink()  # a recorded checkpoint that is gone: no silent fallback to an older step
    caplog.set_level("WARNING")
    assert main(["report", str(tiny_copy)]) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "vaesim.report.pictures"]
    assert said == [f"report: probe set {probe} does not match its recorded SHA-256 (or has no record): nothing is "
                    f"drawn from it; `vaesim study verify {tiny_copy}` lists it and a rerun of `vaesim study run` "
                    "recomputes it"]  # once, however many figures wanted it
    page = (tiny_copy / "report.html").read_text()
    drawn = set(re.findall(r"<figure id='fig-([^']+)'><a [^>]*><img", page))
    assert not {"reconstructions", "traversals_over_training", "traversal_00"} & drawn
    assert "does not match its recorded SHA-256" in page
    # with the probe repaired, the run whose final checkpoint is gone is refused by name; the others are drawn
    _flip_last_byte(probe)
    pictures._refused.clear()
    caplog.clear()
    assert main(["report", str(tiny_copy)]) == 0
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "vaesim.report.pictures")
    assert f"checkpoint {final} does not match its recorded SHA-256" in said and str(probe) not in said
    drawn = set(re.findall(r"<figure id='fig-([^']+)'><a [^>]*><img", (tiny_copy / "report.html").read_text()))
    assert "traversal_00" not in drawn and "traversal_01" in drawn
