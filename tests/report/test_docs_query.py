"""The example query of docs/study.md answers what its comment says (checked on a synthetic store)."""

from __future__ import annotations

import re
from pathlib import Path

from synthetic_store import Synthetic

from vaesim.study import query

DOC = Path(__file__).resolve().parents[2] / "docs" / "study.md"


def test_docs_seed_query_gives_same_layer_cka_only(tmp_path):
    match = re.search(r'query\(out, ((?:"[^"]*"\s*)+)\)', DOC.read_text())
    assert match, "docs/study.md lost its query example"
    sql = "".join(re.findall(r'"([^"]*)"', match.group(1)))
    synthetic = Synthetic()
    frame = query(synthetic.write_study(tmp_path / "study"), sql)
    scores = dict(zip(frame["a_layer"], frame.iloc[:, 1]))
    # by construction: the same encoder trunk layer agrees across seeds at trunk_agreement, the decoder at 0.85
    assert set(scores) == set(synthetic.layers)
    from vaesim.models.names import NETWORK_ORDER

    assert list(frame["a_layer"]) == [name for name in NETWORK_ORDER if name in scores]  # network order, as said
    assert abs(scores["encoder.conv1"] - synthetic.trunk_agreement) < 1e-9
    assert abs(scores["decoder.deconv1"] - 0.85) < 1e-9
