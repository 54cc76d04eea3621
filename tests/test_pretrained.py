"""The pretrained models shipped in the package: they load offline, match
their catalogue (SHA-256, the test bits/dim it documents, a current
typicality reference), and `realnvp-sample --pretrained` draws from them."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import tfp_realnvp
from conftest import SHARED
from tfp_realnvp import _pretrained
from training import data
from training import sample as sample_cli

MNIST_TFDS = os.path.join(SHARED, "data", "tfds")


def _test_bits_per_dim(model, datasets):
  return float(model.evaluate(datasets.test, verbose=0,
                              return_dict=True)["bits_per_dim"])


def test_catalogue_lists_digits_and_mnist():
  assert tfp_realnvp.pretrained_names() == ["digits", "mnist"]
  for name in ("digits", "mnist"):
    info = tfp_realnvp.pretrained_info(name)
    size = os.path.getsize(os.path.join(_pretrained.WEIGHTS_DIR,
                                        info["file"]))
    assert size < 5_000_000, (name, size)  # shipped in the wheel
    assert info["command"] and info["date"] and info["machine"]
  with pytest.raises(ValueError, match="expected one of digits, mnist"):
    tfp_realnvp.pretrained("cifar10")


def test_pretrained_digits_reproduces_its_documented_figure():
  model = tfp_realnvp.pretrained("digits")
  info = tfp_realnvp.pretrained_info("digits")
  assert tuple(model.image_shape) == (8, 8, 1)
  assert model.count_params() == info["parameters"]
  model.check_score_statistics()  # the reference belongs to these weights
  assert model.score_statistics.as_dict() == info["score_statistics"]
  # The catalogue's figure is realnvp-evaluate's: the run's noise seed.
  bpd = _test_bits_per_dim(model, data.load("digits", seed=info["seed"]))
  assert bpd == pytest.approx(info["test_bits_per_dim"], abs=1e-4)


@pytest.mark.skipif(not os.path.isdir(os.path.join(MNIST_TFDS, "mnist")),
                    reason=f"no prepared tfds mnist under {MNIST_TFDS} "
                           f"(../shared is not part of a fresh clone)")
def test_pretrained_mnist_reproduces_its_documented_figure():
  model = tfp_realnvp.pretrained("mnist")
  info = tfp_realnvp.pretrained_info("mnist")
  model.check_score_statistics()
  bpd = _test_bits_per_dim(model, data.load(
      "mnist", seed=info["seed"], data_dir=MNIST_TFDS, download=False))
  assert bpd == pytest.approx(info["test_bits_per_dim"], abs=1e-4)


def test_a_damaged_file_is_refused(tmp_path, monkeypatch):
  copy = tmp_path / "weights"
  shutil.copytree(_pretrained.WEIGHTS_DIR, copy)
  path = copy / tfp_realnvp.pretrained_info("digits")["file"]
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(raw))
  monkeypatch.setattr(_pretrained, "WEIGHTS_DIR", str(copy))
  monkeypatch.setattr(_pretrained, "CATALOGUE", str(copy / "catalogue.json"))
  with pytest.raises(ValueError, match="does not match its catalogue"):
    tfp_realnvp.pretrained("digits")


def test_sample_cli_from_a_pretrained_model(tmp_path, capsys):
  out = str(tmp_path / "mnist.png")
  assert sample_cli.main(["--pretrained", "mnist", "--output", out, "--num",
                          "16", "--temperature", "0.7", "--quiet"]) == 0
  image = np.asarray(Image.open(out))
  # 4×4 tiles of 28 px + frame, no upscaling (28 px images), 16-px caption.
  assert image.shape[:2] == (16 + 4 * 29 + 1, 4 * 29 + 1)
  assert image[16:].std() > 10
  with pytest.raises(SystemExit):
    sample_cli.main(["--output", out])
  assert "exactly one" in capsys.readouterr().err


def test_evaluate_and_score_clis_take_a_pretrained_model(tmp_path, capsys):
  """`realnvp-evaluate --pretrained NAME` reproduces the catalogue's figure
  on the model's own dataset; `realnvp-score --pretrained NAME` scores a
  dataset with it; each CLI wants exactly one model source."""
  import json  # pylint: disable=import-outside-toplevel
  from training import evaluate as evaluate_cli  # pylint: disable=import-outside-toplevel
  from training import score as score_cli  # pylint: disable=import-outside-toplevel
  info = tfp_realnvp.pretrained_info("digits")
  assert evaluate_cli.main(["--pretrained", "digits", "--seed",
                            str(info["seed"]), "--quiet"]) == 0
  report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert report["checkpoint"] == "pretrained:digits"
  assert report["bits_per_dim"] == pytest.approx(info["test_bits_per_dim"],
                                                 abs=1e-4)
  out = str(tmp_path / "scores.csv")
  assert score_cli.main(["--pretrained", "digits", "--data", "digits",
                         "--output", out, "--quiet"]) == 0
  scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert scored["count"] == len(data.digits_arrays()["test"][0])
  assert np.isfinite(scored["mean"]) and os.path.exists(out)
  for cli, argv in ((evaluate_cli, []),
                    (evaluate_cli, ["run", "--pretrained", "digits"]),
                    (score_cli, ["--data", "digits", "--output", out]),
                    (score_cli, ["--model", "run", "--pretrained", "digits",
                                 "--data", "digits", "--output", out])):
    with pytest.raises(SystemExit):
      cli.main(argv)
    assert "exactly one" in capsys.readouterr().err
  assert evaluate_cli.main(["--pretrained", "digits", "--raw_weights"]) == 2
  assert "one set of weights" in capsys.readouterr().err
