"""Whole keras.applications networks: export --all --fuse takes every depthwise-like layer.

The models are built once per session with weights=None (no download) in a subprocess
on Keras' numpy backend, which builds them in seconds where the JAX backend takes about a
minute; the .keras files do not depend on the backend that wrote them.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("keras")

from dwconv.cli import main                                   # noqa: E402
from dwconv.models.export import read_tree                    # noqa: E402

#: model -> (builder, depthwise-like layers, their kind, layers after a ZeroPadding)
MODELS = {
    "xception": ("Xception(weights=None, input_shape=(71, 71, 3), include_top=False)",
                 34, "SeparableConv2D", 0),
    "nasnet": ("NASNetMobile(weights=None, input_shape=(32, 32, 3), include_top=False)",
               160, "SeparableConv2D", 16),
    "convnext": ("ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), include_top=False)",
                 18, "Conv2D", 0),
    "mobilenetv2": ("MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3), "
                    "include_top=False)", 17, "DepthwiseConv2D", 4),
}

_BUILD = """
import sys, keras
for builder, path in zip(sys.argv[1::2], sys.argv[2::2]):
    eval("keras.applications." + builder).save(path)
"""


@pytest.fixture(scope="module")
def applications(tmp_path_factory):
    folder = tmp_path_factory.mktemp("applications")
    env = dict(os.environ, KERAS_BACKEND="numpy", KERAS_HOME=str(folder / "keras_home"),
               PYTHONWARNINGS="ignore")
    paths = {name: folder / f"{name}.keras" for name in MODELS}
    arguments = [text for name, (builder, *_) in MODELS.items()
                 for text in (builder, str(paths[name]))]
    subprocess.run([sys.executable, "-c", _BUILD, *arguments], env=env, check=True,
                   capture_output=True, timeout=600)
    return paths


@pytest.mark.parametrize("name", list(MODELS))
def test_export_all_fused_takes_every_layer(applications, name, tmp_path, capsys):
    _, count, kind, padded = MODELS[name]
    out = tmp_path / "tree"
    assert main(["export", str(applications[name]), "--all", "--fuse", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"found {count} depthwise-like layer(s) ({count} {kind}); exported {count} " \
           f"({count} {kind})" in printed
    assert "skipped" not in printed
    found = read_tree(out)
    assert len(found) == count
    documents = [json.loads((sub / "layer.json").read_text()) for _, sub in found]
    assert {d["kind"] for d in documents} == {kind}
    explicit = [d for d in documents if isinstance(d["padding"], list)]
    assert len(explicit) == padded
    assert all(any("pad" in f.lower() for f in d["fused"]) for d in explicit)


def test_refusals_stay_short(applications, tmp_path, capsys):
    """A model without depthwise layers would list ~700 layers; the message summarizes."""
    assert main(["export", str(applications["nasnet"]), "--layer", "normal_concat_1",
                 "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600 and "is a Concatenate" in err
    assert main(["export", str(applications["nasnet"]), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "160 SeparableConv2D layers" in err and "and 154 more" in err and len(err) < 600
    assert not (tmp_path / "x").exists()
