"""Architecture plug-ins: a researcher's own VAE built, checked, trained and recorded like the built-in one."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from vaesim.activations import extract_activations
from vaesim.models import build_vae
from vaesim.models.names import LAYER_NAMES, OBJECTIVE_NAMES
from vaesim.models.plugin_table import study_layer_name

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield


def test_the_declared_roles_name_the_study_layers_and_the_state_dict_is_the_plugins_own():
    import bn_conv_vae
    import mlp_vae

    torch.manual_seed(0)
    model = build_vae("mlp_vae:make_vae", 1, 4)
    assert model.layer_names == ("input", "encoder.enc.h1", "encoder.enc.h2", "encoder.mean", "encoder.logvar",
                                 "encoder.variance", "encoder.sample", "decoder.dec1", "decoder.dec2",
                                 "decoder.output")
    own = mlp_vae.make_vae(1, 4)
    assert list(model.state_dict()) == list(own.state_dict())
    own.load_state_dict(model.state_dict())  # a vaesim checkpoint loads into the researcher's own class
    x = torch.rand(3, 1, 64, 64)
    assert torch.equal(model.encode(x)[0], own.encode(x)[0])
    conv = build_vae("bn_conv_vae:make_vae", 3, 5)
    assert [k for k in conv.state_dict()] == list(bn_conv_vae.make_vae(3, 5).state_dict())
    assert "features.0.1.num_batches_tracked" in conv.state_dict()  # BatchNorm's buffers are part of the model
    assert conv.config() == {"architecture": "bn_conv_vae:make_vae", "num_channels": 3, "latent_dim": 5}


def test_study_names_follow_the_role_and_keep_an_existing_prefix():
    assert study_layer_name("enc.h1", "encoder") == "encoder.enc.h1"
    assert study_layer_name("encoder.conv1", "encoder") == "encoder.conv1"
    assert study_layer_name("up.0", "decoder") == "decoder.up.0"
    assert study_layer_name("fc_mu", "mean") == "encoder.mean"
    assert study_layer_name("to_pixels", "output") == "decoder.output"
    with pytest.raises(ValueError, match="role 'head' is unknown"):
        study_layer_name("x", "head")


def test_extraction_records_every_declared_layer_as_the_forward_pass_computes_it():
    torch.manual_seed(1)
    model = build_vae("bn_conv_vae:make_vae", 1, 6).eval()
    x = torch.rand(7, 1, 64, 64)
    noise = torch.randn(7, 6, generator=torch.Generator().manual_seed(3))
    arrays = extract_activations(model, x, seed=3, batch_size=16)  # one batch: the same kernels as below
    assert list(arrays) == list(model.layer_names)
    with torch.no_grad():
        h = x
        for i in range(5):
            h = model.features[i](h)
            np.testing.assert_array_equal(arrays[f"encoder.features.{i}"], h.flatten(1).numpy())
        mean, logvar = model.encode(x)
        out = model(x, noise)
    np.testing.assert_array_equal(arrays["input"], x.flatten(1).numpy())
    np.testing.assert_array_equal(arrays["encoder.mean"], mean.numpy())
    np.testing.assert_array_equal(arrays["encoder.variance"], torch.exp(logvar).numpy())
    np.testing.assert_array_equal(arrays["encoder.sample"], out.sample.numpy())
    np.testing.assert_array_equal(arrays["decoder.output"], out.logits.flatten(1).numpy())


def test_a_layer_followed_by_an_in_place_relu_is_recorded_before_it(tmp_path, monkeypatch):
    (tmp_path / "inplace_vae.py").write_text(textwrap.dedent('''
        from torch import nn

        class Net(nn.Module):
            def __init__(self, num_channels, latent_dim):
                super().__init__()
                self.lin = nn.Linear(num_channels * 4096, 32)
                self.act = nn.ReLU(inplace=True)
                self.mu, self.lv = nn.Linear(32, latent_dim), nn.Linear(32, latent_dim)
                self.out = nn.Linear(latent_dim, num_channels * 4096)
                self.vaesim_layers = [("lin", "encoder"), ("mu", "mean"), ("lv", "logvar"), ("out", "output")]

            def encode(self, x):
                h = self.act(self.lin(x.flatten(1)))
                return self.mu(h), self.lv(h)

            def decode(self, z):
                return self.out(z).view(-1, 1, 64, 64)

        def make(num_channels, latent_dim):
            return Net(num_channels, latent_dim)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = build_vae("inplace_vae:make", 1, 2, init="pytorch")
    x = torch.rand(16, 1, 64, 64)
    recorded = extract_activations(model, x, layers=["encoder.lin"])["encoder.lin"]
    with torch.no_grad():
        expected = model.lin(x.flatten(1)).numpy()
    assert (expected < 0).any()  # the ReLU would have zeroed these in place
    np.testing.assert_array_equal(recorded, expected)


def test_the_builtin_conv_declared_as_a_plugin_is_the_builtin_bit_for_bit():
    torch.manual_seed(4)
    builtin = build_vae("conv", 1, 10)
    torch.manual_seed(4)
    plugin = build_vae("builtin_conv:make_vae", 1, 10)
    assert plugin.layer_names == LAYER_NAMES
    assert list(plugin.state_dict()) == list(builtin.state_dict())
    for key, value in builtin.state_dict().items():
        assert torch.equal(value, plugin.state_dict()[key]), key
    x = torch.rand(5, 1, 64, 64)
    a, b = extract_activations(builtin, x, seed=2), extract_activations(plugin, x, seed=2)
    for name in LAYER_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class Crash(Exception):
    pass


def crash_at(step):
    def callback(finished):
        if finished == step:
            raise Crash
    return callback


@pytest.mark.parametrize("objective", OBJECTIVE_NAMES)
def test_every_objective_trains_a_plugin_and_resumes_it_bit_identically(tmp_path, objective):
    from vaesim.training import TrainConfig, list_checkpoints, load_checkpoint, train

    config = TrainConfig(dataset="dsprites-procedural", objective=objective, steps=4, batch_size=8,
                         checkpoints=[0, 2, 4], architecture="bn_conv_vae:make_vae", latent_dim=3, log_every=1)
    train(config, tmp_path / "whole", device="cpu", progress=False)
    with pytest.raises(Crash):
        train(config, tmp_path / "resumed", device="cpu", progress=False, callback=crash_at(3))
    assert list_checkpoints(tmp_path / "resumed") == [0, 2]
    torch.manual_seed(123)  # a resumed process starts from an unrelated RNG state
    train(config, tmp_path / "resumed", device="cpu", progress=False)
    model_a, meta = load_checkpoint(tmp_path / "whole", 4)
    model_b, _ = load_checkpoint(tmp_path / "resumed", 4)
    assert meta["model"]["architecture"] == "bn_conv_vae:make_vae"
    assert np.isfinite(meta["losses"]["loss"])
    initial, _ = load_checkpoint(tmp_path / "whole", 0)
    assert not torch.equal(initial.state_dict()["fc.weight"], model_a.state_dict()["fc.weight"])  # it learned
    assert model_a.state_dict()["features.0.1.num_batches_tracked"] == 4  # BatchNorm ran in training mode
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key


GOOD = '''
from torch import nn

class Net(nn.Module):
    def __init__(self, num_channels, latent_dim):
        super().__init__()
        self.lin = nn.Linear(num_channels * 4096, 16)
        self.spare = nn.Linear(16, 16)
        self.mu, self.lv = nn.Linear(16, latent_dim), nn.Linear(16, latent_dim)
        self.out = nn.Linear(latent_dim, num_channels * 4096)
        self.vaesim_layers = [("lin", "encoder"), ("mu", "mean"), ("lv", "logvar"), ("out", "output")]

    def encode(self, x):
        h = self.lin(x.flatten(1))
        return self.mu(h), self.lv(h)

    def decode(self, z):
        return self.out(z).view(-1, 1, 64, 64)

def make(num_channels, latent_dim):
    return Net(num_channels, latent_dim)
'''

BAD = {
    "encode returning one tensor": (("return self.mu(h), self.lv(h)", "return self.mu(h)"),
                                    "encode(x) returned one tensor (2, 10); expected a pair (mean, logvar)"),
    "wrong mean shape": (("self.mu, self.lv = nn.Linear(16, latent_dim)", "self.mu, self.lv = nn.Linear(16, 3)"),
                         "encode(x) returned mean of shape (2, 3); expected (2, 10)"),
    "wrong output shape": (('view(-1, 1, 64, 64)', 'view(-1, 1, 32, 128)'),
                           "decode(z) returned (2, 1, 32, 128); expected logits shaped like the input (2, 1, 64, 64)"),
    "a role naming no module": (('("lin", "encoder")', '("linear", "encoder")'),
                                "role 'encoder' names module 'linear', which the network does not have"),
    "a layer that never fires": (('("lin", "encoder")', '("lin", "encoder"), ("spare", "encoder")'),
                                 "layer 'spare' (encoder) never ran in encode/decode"),
    "a factory that raises": (("    return Net(num_channels, latent_dim)", "    raise RuntimeError('no GPU here')"),
                              "make(num_channels=1, latent_dim=10) raised RuntimeError: no GPU here"),
    "no mean role": (('("mu", "mean"), ', ''), "0 layer(s) with role 'mean'; expected exactly one"),
    "an unknown role": (('("lv", "logvar")', '("lv", "log_variance")'),
                        "layer 'lv' has role 'log_variance'; expected one of encoder, mean, logvar, decoder, output"),
}


def _spec(tmp_path, module: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f'''
        name: own
        datasets: [dsprites-procedural]
        objectives: [{{name: beta_vae, values: [1]}}]
        seeds: [0]
        training: {{steps: 10, batch_size: 4, architecture: "{module}:make"}}
        probe: {{n: 16}}
    '''))
    return spec


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_plugin_is_refused_with_one_line_before_any_work(tmp_path, case):
    from vaesim.study import load_spec

    (old, new), message = BAD[case]
    module = f"bad_vae_{sorted(BAD).index(case)}"
    assert old in GOOD
    (tmp_path / f"{module}.py").write_text(GOOD.replace(old, new))  # beside the spec: found there
    with pytest.raises(ValueError) as caught:
        load_spec(_spec(tmp_path, module))
    lines = [line for line in str(caught.value).splitlines() if line.strip().startswith("- ")]
    # an unknown role also leaves the logvar role empty: two true problems, both said
    assert len(lines) == (2 if case == "an unknown role" else 1), str(caught.value)
    assert all(f"training.architecture '{module}:make': " in line for line in lines), lines
    assert message in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_good_plugin_beside_the_spec_passes_and_reading_the_spec_without_plugins_runs_no_code(tmp_path):
    from vaesim.study import load_spec

    (tmp_path / "good_vae_beside.py").write_text(GOOD)
    spec = load_spec(_spec(tmp_path, "good_vae_beside"))
    assert spec.layer_names() == ["input", "encoder.lin", "encoder.mean", "encoder.logvar", "encoder.variance",
                                  "encoder.sample", "decoder.output"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "spec.yaml").write_text(_spec(tmp_path, "never_imported_vae").read_text())
    with pytest.raises(ValueError, match="no architecture.json beside the spec records its layers"):
        load_spec(other / "spec.yaml", import_plugins=False)
    assert "never_imported_vae" not in sys.modules


def test_the_docs_residual_vae_is_a_working_plugin(tmp_path, monkeypatch):
    import re

    text = (Path(__file__).parents[2] / "docs" / "own-model.md").read_text()
    code = re.search(r"<!-- own-model-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "res_vae_docs.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = build_vae("res_vae_docs:make_vae", 3, 6)
    assert model.layer_names == ("input", "encoder.down1", "encoder.res1", "encoder.down2", "encoder.res2",
                                 "encoder.pool", "encoder.mean", "encoder.logvar", "encoder.variance",
                                 "encoder.sample", "decoder.from_code", "decoder.up1", "decoder.up2",
                                 "decoder.output")
    arrays = extract_activations(model, torch.rand(4, 3, 64, 64))
    assert arrays["encoder.res1"].shape == (4, 32 * 32 * 32) and arrays["decoder.output"].shape == (4, 3 * 4096)


def test_an_installed_entry_point_names_the_architecture(tmp_path, monkeypatch):
    from vaesim.study import load_spec

    site = tmp_path / "site"
    info = site / "vaesim_arch_demo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vaesim-arch-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vaesim.architectures]\nsmall_mlp = vaesim_arch_demo:make\n"
                                           "broken_arch = vaesim_arch_missing:make\n")
    (site / "vaesim_arch_demo.py").write_text(GOOD)
    monkeypatch.syspath_prepend(str(site))
    spec_file = _spec(tmp_path, "x").read_text().replace('"x:make"', "small_mlp")
    (tmp_path / "spec.yaml").write_text(spec_file)
    assert load_spec(tmp_path / "spec.yaml").layer_names()[1] == "encoder.lin"
    model = build_vae("small_mlp", 1, 3)
    assert model.config()["architecture"] == "small_mlp" and "lin.weight" in model.state_dict()
    (tmp_path / "spec.yaml").write_text(spec_file.replace("small_mlp", "broken_arch"))
    with pytest.raises(ValueError, match=r"entry point 'vaesim_arch_missing:make' cannot be loaded "
                                         r"\(ModuleNotFoundError"):
        load_spec(tmp_path / "spec.yaml")
    (tmp_path / "spec.yaml").write_text(spec_file.replace("small_mlp", "resnet50"))
    for import_plugins in (True, False):
        with pytest.raises(ValueError, match=r"training.architecture: unknown architecture 'resnet50'; allowed values: "
                                             r"conv, fc, a plug-in 'module:factory'"):
            load_spec(tmp_path / "spec.yaml", import_plugins=import_plugins)


def test_plan_without_calibration_tries_the_plugin_and_counts_its_layers(tmp_path, capsys):
    from vaesim.cli import main

    (tmp_path / "plan_vae.py").write_text(GOOD)
    assert main(["study", "plan", str(_spec(tmp_path, "plan_vae")), "--no-calibrate"]) == 0
    assert "extract" in capsys.readouterr().out
    (tmp_path / "plan_vae_bad.py").write_text(GOOD.replace("return self.mu(h), self.lv(h)", "return self.mu(h)"))
    assert main(["study", "plan", str(_spec(tmp_path, "plan_vae_bad")), "--no-calibrate"]) == 2
    assert "encode(x) returned one tensor" in capsys.readouterr().err
