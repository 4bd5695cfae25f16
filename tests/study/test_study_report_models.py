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
