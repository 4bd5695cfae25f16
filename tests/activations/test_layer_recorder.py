import numpy as np
import pytest
import torch
from torch import nn

from vaesim.activations import LayerRecorder, extract_activations, extract_checkpoint
from vaesim.models import FC_LAYER_NAMES, LAYER_NAMES, build_vae


class Unseen(nn.Module):
    """A model the recorder has never seen: nested containers, a tuple-returning block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
        self.blocks = nn.ModuleList([nn.Linear(4 * 8 * 8, 16), nn.Linear(16, 5)])
        self.split = nn.LSTM(5, 3, batch_first=True)

    def forward(self, x):
        h = self.stem(x).flatten(1)
        h = torch.relu(self.blocks[0](h))
        h = self.blocks[1](h)
        out, _ = self.split(h[:, None, :])
        return out[:, 0]


def test_recorder_on_a_model_it_has_never_seen():
    torch.manual_seed(0)
    model = Unseen()
    x = torch.randn(6, 3, 8, 8)
    with LayerRecorder(model, ["stem", "stem.0", "blocks.1", "split"]) as recorder:
        model(x[:4])
        model(x[4:])
    arrays = recorder.arrays()
    with torch.no_grad():
        stem = model.stem(x)
        expected_block = model.blocks[1](torch.relu(model.blocks[0](stem.flatten(1))))
        expected_split = model.split(expected_block[:, None, :])[0]
    assert all(a.dtype == np.float32 for a in arrays.values())
    np.testing.assert_allclose(arrays["stem"], stem.reshape(6, -1).numpy(), rtol=1e-6)
    assert arrays["stem.0"].shape == (6, 4 * 8 * 8)
    np.testing.assert_allclose(arrays["blocks.1"], expected_block.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["split"], expected_split.reshape(6, -1).numpy(), rtol=1e-5, atol=1e-6)
    model(x)  # hooks are gone after the with block
    assert recorder.arrays()["stem"].shape[0] == 6


def test_recorder_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"Unseen has no module named \['head'\]; available names: \['stem'"):
        LayerRecorder(Unseen(), ["head"])
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got function"):
        LayerRecorder(lambda x: x, ["x"])
    recorder = LayerRecorder(Unseen(), ["stem"])
    with pytest.raises(ValueError, match="module 'stem' recorded nothing; run a forward pass first"):
        recorder.arrays()
    recorder.close()


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return build_vae(latent_dim=6), (rng.random((10, 1, 64, 64)) > 0.8).astype(np.float32)


def test_extraction_gives_every_layer_as_float32_rows(model_and_images):
    model, images = model_and_images
    arrays = extract_activations(model, images, batch_size=4)
    assert list(arrays) == list(LAYER_NAMES)
    widths = {"input": 4096, "encoder.conv1": 32768, "encoder.conv4": 1024, "encoder.fc": 256, "encoder.sample": 6,
              "decoder.fc2": 1024, "decoder.deconv3": 32768, "decoder.output": 4096}
    for name, width in widths.items():
        assert arrays[name].shape == (10, width) and arrays[name].dtype == np.float32, name
    np.testing.assert_array_equal(arrays["input"], images.reshape(10, -1))
    np.testing.assert_allclose(arrays["encoder.variance"], np.exp(arrays["encoder.logvar"]), rtol=1e-6)
    noise = torch.randn(10, 6, generator=torch.Generator().manual_seed(0)).numpy()
    expected_sample = arrays["encoder.mean"] + np.exp(arrays["encoder.logvar"] / 2) * noise
    np.testing.assert_allclose(arrays["encoder.sample"], expected_sample, rtol=1e-5, atol=1e-6)


def test_extraction_is_reproducible_and_independent_of_batch_size(model_and_images):
    model, images = model_and_images
    layers = ["encoder.sample", "decoder.output"]
    torch.manual_seed(1)
    first = extract_activations(model, images, layers=layers, batch_size=3, seed=5)
    torch.manual_seed(2)  # the global RNG plays no part
    second = extract_activations(model, images, layers=layers, batch_size=10, seed=5)
    for name in layers:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-5, atol=1e-6)
    other_seed = extract_activations(model, images, layers=["encoder.sample"], seed=6)
    assert not np.allclose(other_seed["encoder.sample"], first["encoder.sample"])
    uint8 = extract_activations(model, (images * 255).astype(np.uint8), layers=["encoder.mean"])
    np.testing.assert_allclose(uint8["encoder.mean"], extract_activations(model, images, layers=["encoder.mean"])["encoder.mean"], rtol=1e-6)


def test_extraction_errors_and_fc_layers(model_and_images):
    model, images = model_and_images
    with pytest.raises(ValueError, match=r"unknown layers \['encoder.conv9'\]; valid layers: \['input'"):
        extract_activations(model, images, layers=["encoder.conv9"])
    with pytest.raises(ValueError, match=r"images must be shaped \(n, C, 64, 64\), got \(64, 64\)"):
        extract_activations(model, images[0, 0])
    with pytest.raises(TypeError, match=r"expected a vaesim VAE \(built-in or plug-in\), got Unseen; for another model use"):
        extract_activations(Unseen(), images)
    fc = extract_activations(build_vae("fc", 1, 3), images[:2])
    assert list(fc) == list(FC_LAYER_NAMES) and fc["encoder.fc2"].shape == (2, 1200)


def test_extraction_from_a_checkpoint(tmp_path):
    from vaesim.training import ImageArray, TrainConfig, load_checkpoint, train

    images = (np.random.default_rng(1).random((8, 1, 64, 64)) > 0.7).astype(np.uint8) * 255
    config = TrainConfig(steps=1, batch_size=4, checkpoints=[], log_every=1)
    train(config, tmp_path, dataset=ImageArray(images), progress=False)
    from_run = extract_checkpoint(tmp_path, 1, images, layers=["encoder.fc", "encoder.sample"], seed=3)
    model, _ = load_checkpoint(tmp_path, 1)
    direct = extract_activations(model, images, layers=["encoder.fc", "encoder.sample"], seed=3)
    for name in direct:
        np.testing.assert_array_equal(from_run[name], direct[name])


def test_arrays_twice_and_more_rows_after_joining():
    import numpy as np
    import torch
    from torch import nn

    from vaesim.activations import LayerRecorder

    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
    x = torch.randn(7, 3)
    with LayerRecorder(net, ["0"]) as recorder:
        net(x[:4])
        net(x[4:])
        first = recorder.arrays()["0"]
        again = recorder.arrays()["0"]
        net(x[:2])
        longer = recorder.arrays()["0"]
    expected = net[0](x).detach().numpy()
    np.testing.assert_allclose(first, expected, rtol=1e-6, atol=1e-7)  # batch size changes the GEMM's rounding
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(longer[:7], first)
    np.testing.assert_allclose(longer[7:], expected[:2], rtol=1e-6, atol=1e-7)
