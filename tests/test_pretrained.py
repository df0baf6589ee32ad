"""Fine-tuning from published ViT weights: reading, converting, loading, training, serving."""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import threading
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from reference_vit import reference_logits

from sagevit.config import Hyperparameters
from sagevit.errors import ConfigError
from sagevit.flags import parse_hyperparameters
from sagevit.model.pretrained import (
    PretrainedError,
    download,
    find_weights_file,
    interpolate_positions,
    load_pretrained,
    read_checkpoint,
)
from sagevit.model.vit import build_vit
from sagevit.model.weight_files import WeightFileError, read_safetensors
from scripts.local.synthetic_weights import timm_state, to_big_vision, to_transformers, write

# A ViT small enough to compute in numpy: 8x8 images of 4x4 patches (a 2x2 grid).
ARCH = {"d_model": 8, "depth": 2, "mlp_dim": 16, "patch_size": 4, "grid": 2}
HEADS = 2


def tiny_vit(image_size: int = 8, num_classes: int = 5, **overrides: object):
    kwargs = dict(
        image_size=image_size, patch_size=4, num_layers=2, d_model=8, num_heads=HEADS,
        mlp_dim=16, num_classes=num_classes, dropout=0.0, norm="pre", tokenizer="patch",
        conv_layers=2, pooling="class_token", stochastic_depth=0.0, pixel_scale="symmetric",
    )  # fmt: skip
    return build_vit(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return timm_state(np.random.default_rng(0), num_classes=5, **ARCH)


def as_convention(state: dict, convention: str) -> dict:
    if convention == "transformers":
        return to_transformers(state, ARCH["depth"])
    if convention == "big_vision":
        return to_big_vision(state, ARCH["depth"], HEADS)
    return state


SUFFIX = {"timm": ".safetensors", "transformers": ".safetensors", "big_vision": ".npz"}


def checkpoint_file(folder: Path, state: dict, convention: str = "timm") -> Path:
    return write(folder / f"model{SUFFIX[convention]}", as_convention(state, convention))


# --- the safetensors reader ----------------------------------------------------------


def test_reader_matches_the_reference_writer(tmp_path):
    from safetensors.numpy import save_file

    tensors = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1.5, -2.0], np.float16),
        "ids": np.arange(4, dtype=np.int64),
        "scalar": np.array(3.0, np.float64),
    }
    save_file(tensors, str(tmp_path / "w.safetensors"))
    read = read_safetensors(tmp_path / "w.safetensors")
    assert set(read) == set(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(read[name], value)
    assert read["b"].dtype == np.float32 and read["ids"].dtype == np.int64


def raw_file(path: Path, header: object, body: bytes = b"") -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + body)
    return path


def test_bfloat16_tensors_become_float32(tmp_path):
    values = np.array([1.0, -0.5, 3.0], ml_dtypes.bfloat16)
    header = {"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}
    read = read_safetensors(raw_file(tmp_path / "w.safetensors", header, values.tobytes()))
    np.testing.assert_array_equal(read["x"], [1.0, -0.5, 3.0])
    assert read["x"].dtype == np.float32


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "bytes 0-16 of 8"),
        ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "do not hold F32 \\[3\\]"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 0]}}, b"\0" * 8, "bytes 4-0"),
        ({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype 'C64'"),
        ({"x": {"dtype": "F32", "shape": "big", "data_offsets": [0, 4]}}, b"\0" * 4, "shape 'big'"),
        ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "shape \\[-1\\]"),
        ({"x": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "needs exactly dtype, shape and data_offsets"),
        ([1, 2], b"", "not a JSON object"),
    ],
)  # fmt: skip
def test_hostile_safetensors_are_one_sentence(tmp_path, header, body, message):
    with pytest.raises(WeightFileError, match=message) as caught:
        read_safetensors(raw_file(tmp_path / "w.safetensors", header, body))
    assert "\n" not in str(caught.value) and "w.safetensors" in str(caught.value)


def test_a_header_longer_than_the_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightFileError, match="header of 1000000000000 bytes does not fit"):
        read_safetensors(path)
    path.write_bytes(b"\x02\0")
    with pytest.raises(WeightFileError, match="too short"):
        read_safetensors(path)
    path.write_bytes((4).to_bytes(8, "little") + b"\xff\xfe{}")
    with pytest.raises(WeightFileError, match="not JSON"):
        read_safetensors(path)


# --- conversion against the reference computation --------------------------------------


@pytest.mark.parametrize("convention", ["timm", "transformers", "big_vision"])
def test_converted_weights_compute_what_the_reference_computes(tmp_path, state, convention):
    checkpoint = read_checkpoint(checkpoint_file(tmp_path, state, convention))
    assert checkpoint.convention.name == convention
    assert (checkpoint.d_model, checkpoint.depth, checkpoint.mlp_dim) == (8, 2, 16)
    assert (checkpoint.patch_size, checkpoint.grid, checkpoint.num_classes) == (4, 2, 5)
    model = tiny_vit()
    load_pretrained(model, checkpoint, replace_head=False)
    images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3)).astype(np.float32)
    expected = reference_logits(state, images, HEADS)
    np.testing.assert_allclose(model(images).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_the_replaced_head_starts_at_zero_and_the_old_one_is_named(tmp_path, state, caplog):
    model = tiny_vit(num_classes=3)
    with caplog.at_level(logging.INFO, logger="sagevit.model.pretrained"):
        load_pretrained(model, read_checkpoint(checkpoint_file(tmp_path, state)))
    assert not np.any(model.get_layer("head").kernel.numpy())
    assert "not loaded from model.safetensors: head.bias, head.weight" in caplog.text
    np.testing.assert_array_equal(model.get_layer("class_token").token.numpy(), state["cls_token"])  # fmt: skip


def test_positions_are_interpolated_for_another_image_size(tmp_path, state):
    model = tiny_vit(image_size=16)  # a 4x4 grid from the checkpoint's 2x2
    load_pretrained(model, read_checkpoint(checkpoint_file(tmp_path, state)))
    positions = model.get_layer("position_embedding").position.numpy()
    assert positions.shape == (1, 17, 8)
    np.testing.assert_array_equal(positions[:, 0], state["pos_embed"][:, 0])  # class token's
    assert model(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 5)


def test_interpolation_keeps_a_constant_grid_and_the_same_size():
    constant = np.concatenate([np.full((1, 1, 4), 7.0), np.full((1, 9, 4), 2.0)], axis=1)
    np.testing.assert_allclose(interpolate_positions(constant, 26)[:, 1:], 2.0, rtol=1e-6)
    ramp = np.random.default_rng(0).standard_normal((1, 10, 4)).astype(np.float32)
    np.testing.assert_allclose(interpolate_positions(ramp, 10), ramp, atol=1e-6)


def test_a_checkpoint_of_another_architecture_names_every_difference(tmp_path, state):
    checkpoint = read_checkpoint(checkpoint_file(tmp_path, state, "big_vision"))
    from sagevit.model.pretrained import check_fits

    model = tiny_vit(num_layers=1, mlp_dim=32)
    with pytest.raises(PretrainedError, match="--num-layers 1 \\(the file's: 2\\), --mlp-dim 32 \\(the file's: 16\\)") as caught:  # fmt: skip
        check_fits(checkpoint, model)
    assert "use the matching --preset" in str(caught.value)
    with pytest.raises(PretrainedError, match="--num-heads 4 \\(the file's: 2\\)"):
        check_fits(checkpoint, tiny_vit(num_heads=4))
    with pytest.raises(
        PretrainedError, match="need --tokenizer patch --pooling class_token --norm pre"
    ):
        check_fits(checkpoint, tiny_vit(tokenizer="conv", pooling="sequence"))
    with pytest.raises(PretrainedError, match="use a --preset vit-ti16, vit-s16 or vit-b16"):
        check_fits(checkpoint, tiny_vit(norm="post"))


def test_missing_and_foreign_tensors_are_one_sentence(tmp_path, state):
    broken = {k: v for k, v in state.items() if k != "blocks.1.attn.qkv.bias"}
    with pytest.raises(
        PretrainedError, match=r"lacks timm tensor\(s\) blocks\.1\.attn\.qkv\.bias$"
    ):
        read_checkpoint(checkpoint_file(tmp_path, broken))
    write(tmp_path / "other.safetensors", {"conv1.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(PretrainedError, match="not a ViT checkpoint this trainer knows"):
        read_checkpoint(tmp_path / "other.safetensors")
    write(tmp_path / "nogrid.safetensors", {**state, "pos_embed": np.zeros((1, 4, 8), np.float32)})  # fmt: skip
    with pytest.raises(PretrainedError, match="3 patch positions are no square grid"):
        read_checkpoint(tmp_path / "nogrid.safetensors")


def test_a_dangling_link_is_one_sentence(tmp_path):
    (tmp_path / "model.safetensors").symlink_to(tmp_path / "gone.safetensors")
    with pytest.raises(PretrainedError, match=r"model\.safetensors does not exist$"):
        read_checkpoint(find_weights_file(tmp_path))


def test_the_channel_holds_exactly_one_weights_file(tmp_path, state):
    with pytest.raises(PretrainedError, match="does not exist"):
        find_weights_file(tmp_path / "absent")
    with pytest.raises(PretrainedError, match="found none"):
        find_weights_file(tmp_path)
    checkpoint_file(tmp_path, state)
    assert find_weights_file(tmp_path).name == "model.safetensors"
    checkpoint_file(tmp_path, state, "big_vision")
    with pytest.raises(PretrainedError, match=r"found model\.npz, model\.safetensors"):
        find_weights_file(tmp_path)


# --- the hub handle -----------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path, state):
    """A local stand-in for the Hugging Face Hub serving org/vit's model.safetensors."""
    root = tmp_path / "hub"
    checkpoint_file(root / "org" / "vit" / "resolve" / "main", state)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_hub_handle_downloads_model_safetensors(tmp_path, hub):
    path = download("hf-hub:org/vit", tmp_path / "got", endpoint=hub)
    assert read_checkpoint(path).depth == 2


def test_offline_the_handle_fails_with_one_sentence_naming_the_channel(tmp_path):
    with pytest.raises(PretrainedError) as caught:
        download("hf-hub:google/vit-base", tmp_path, endpoint="http://127.0.0.1:9", timeout=5)
    message = str(caught.value)
    assert "\n" not in message and "could not download hf-hub:google/vit-base" in message
    assert message.endswith("needs the weights in the pretrained channel instead")


def test_pretrained_takes_only_hub_handles():
    assert Hyperparameters(pretrained="hf-hub:timm/vit_tiny_patch16_224").pretrained
    with pytest.raises(ConfigError, match="--pretrained must be a hub handle hf-hub:ORG/NAME"):
        Hyperparameters(pretrained="s3://bucket/vit.safetensors")


# --- the presets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "parameters"),
    # timm's counts for vit_{tiny,small,base}_patch16_224 with a 1000-class head; ViT-B/16's
    # is the "86M" of Dosovitskiy et al. (2021), Table 1.
    [("vit-ti16", 5_717_416), ("vit-s16", 22_050_664), ("vit-b16", 86_567_656)],
)
def test_presets_have_the_published_parameter_counts(preset, parameters):
    hp = parse_hyperparameters(["--preset", preset, "--num-classes", "1000"])
    assert (hp.image_size, hp.patch_size, hp.num_layers) == (224, 16, 12)
    assert build_vit(**hp.model_kwargs()).count_params() == parameters


# --- fine-tuning end to end ---------------------------------------------------------------


def fine_tune_flags(**extra: str) -> list[str]:
    flags = {"image-size": 16, "patch-size": 4, "num-layers": 2, "d-model": 8, "num-heads": 2}
    flags |= {"mlp-dim": 16, "num-classes": 2, "epochs": 1, "batch-size": 4, **extra}
    return ["--preset", "vit-ti16", *(item for k, v in flags.items() for item in (f"--{k}", str(v)))]  # fmt: skip


@pytest.mark.slow
def test_fine_tune_export_serve_predict(tmp_path, state, hub, monkeypatch):
    """Weights from a hub stand-in through the CLI, one epoch on an image folder of
    another size, export, then a JPEG through the served app."""
    from conftest import write_image_tree
    from PIL import Image

    from sagevit.entry import main
    from sagevit_serve.app import create_app
    from sagevit_serve.predictor import Predictor

    folder = write_image_tree(tmp_path / "train", sizes=[(20, 20), (40, 30)] * 4)
    monkeypatch.setenv("HF_ENDPOINT", hub)
    model_dir = tmp_path / "model"
    argv = ["--train", str(folder), "--model-dir", str(model_dir), "--pretrained", "hf-hub:org/vit"]
    assert main([*argv, *fine_tune_flags(**{"layer-decay": 0.7})]) == 0
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["image_size"] == 16

    client = create_app(Predictor.load(model_dir, jit_compile=False)).test_client()
    buffer = io.BytesIO()
    Image.new("RGB", (50, 70), (100, 3, 0)).save(buffer, "JPEG")
    response = client.post("/invocations", data=buffer.getvalue(), content_type="image/jpeg")
    assert response.status_code == 200, response.data
    probabilities = response.get_json()["predictions"][0]
    assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-5


@pytest.mark.slow
def test_a_frozen_backbone_keeps_the_loaded_weights(tmp_path, state):
    from conftest import write_image_tree

    from sagevit.job import run

    folder = write_image_tree(tmp_path / "train", sizes=[(16, 16)] * 4)
    channel = tmp_path / "pretrained"
    checkpoint_file(channel, state, "transformers")
    hp = parse_hyperparameters(fine_tune_flags(**{"freeze-backbone": "True", "image-size": 8}))
    run(hp, folder, tmp_path / "model", pretrained_dir=channel)
    from sagevit.model.vit import load_model

    model = load_model(tmp_path / "model" / "vit.keras")
    qkv = model.get_layer("encoder_block_1").attention.qkv.kernel.numpy()
    np.testing.assert_allclose(qkv, state["blocks.1.attn.qkv.weight"].T, rtol=1e-6)
    assert np.any(model.get_layer("head").kernel.numpy())  # the head trained


def test_a_channel_and_a_handle_together_are_refused(tmp_path, state):
    from sagevit.entry import JobPaths, launch

    hp = parse_hyperparameters([*fine_tune_flags(), "--pretrained", "hf-hub:org/vit"])
    paths = JobPaths(tmp_path, tmp_path / "model", pretrained=tmp_path)
    with pytest.raises(ConfigError, match="both name weights: give one"):
        launch(hp, paths)


@pytest.mark.slow
def test_the_toolkit_passes_the_pretrained_channel(tmp_path, state):
    """The real sagemaker-training `train` with a `pretrained` channel beside `train`."""
    from conftest import run_toolkit, write_image_tree

    from scripts.local.sagemaker_layout import write_training_layout

    weights = tmp_path / "weights"
    checkpoint_file(weights, state, "big_vision")
    flags = fine_tune_flags(**{"image-size": 8})
    hyperparameters = dict(zip(flags[::2], flags[1::2], strict=True))
    hyperparameters = {k.removeprefix("--"): v for k, v in hyperparameters.items()}
    train = write_image_tree(tmp_path / "train", sizes=[(8, 8)] * 4)
    base = write_training_layout(tmp_path / "opt_ml", hyperparameters, {"train": train, "pretrained": weights})  # fmt: skip
    done = run_toolkit(base)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "loaded big_vision ViT: 2 blocks of width 8, 2 heads" in done.stdout + done.stderr
    assert (base / "model" / "vit.keras").is_file()
