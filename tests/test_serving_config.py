"""The shipped TF Serving deployment (saved_models/docker-compose.yml and
batching.config) against real exports: there is no Docker engine here, so
`tfp_realnvp.deployment.check_deployment` reads them as the server would."""

import importlib.metadata
import os
import shutil

import pytest

import tfp_realnvp
from tfp_realnvp import deployment, export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "saved_models")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("deploy") / "saved_models")
  model = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, num_res_blocks=0,
                              num_filters=2, name="tiny")
  export.export_for_serving(model, base)
  export.export_for_serving(model, base)
  for name in ("docker-compose.yml", "batching.config"):
    shutil.copy(os.path.join(SHIPPED, name), base)
  return base


def _copy(deployed, tmp_path):
  base = str(tmp_path / "saved_models")
  shutil.copytree(deployed, base)
  return base


def _edit(path, old, new):
  with open(path) as f:
    text = f.read()
  assert old in text
  with open(path, "w") as f:
    f.write(text.replace(old, new))


def test_shipped_deployment_matches_the_exports(deployed):
  summary = deployment.check_deployment(deployed)
  assert summary["models"] == {"tiny": [1, 2]}
  assert summary["max_batch_size"] == 64
  # The pinned server is the release of the serving API we install.
  api = importlib.metadata.version("tensorflow-serving-api")
  assert summary["image"] == f"tensorflow/serving:{api}"


def test_batching_parameters_follow_the_server_rules():
  with open(os.path.join(SHIPPED, "batching.config")) as f:
    params = deployment.batching_parameters(f.read())
  assert list(params.allowed_batch_sizes) == [8, 16, 32, 64]
  assert params.batch_timeout_micros.value == 2000
  with pytest.raises(ValueError, match="must equal max_batch_size"):
    deployment.batching_parameters(
        "max_batch_size { value: 64 } allowed_batch_sizes: 8 "
        "allowed_batch_sizes: 48")
  with pytest.raises(ValueError, match="increasing"):
    deployment.batching_parameters(
        "max_batch_size { value: 8 } allowed_batch_sizes: 16 "
        "allowed_batch_sizes: 8")
  with pytest.raises(ValueError, match="num_batch_threads must be >= 1"):
    deployment.batching_parameters("num_batch_threads { value: 0 }")
  with pytest.raises(ValueError, match="not a BatchingParameters"):
    deployment.batching_parameters("max_batch_size: 64")


@pytest.mark.parametrize("old,new,message", [
    ("tensorflow/serving:2.21.0", "tensorflow/serving:latest", "not pinned"),
    ("tensorflow/serving:2.21.0", "tensorflow/serving:2.18.0",
     "older than the TensorFlow"),
    ("./:/models:ro", "./other:/models:ro", "is not mounted at /models"),
    ("--model_config_file=/models/models.config",
     "--model_config_file=/models/missing.config", "does not exist"),
])
def test_a_broken_compose_file_is_named(deployed, tmp_path, old, new,
                                        message):
  base = _copy(deployed, tmp_path)
  _edit(os.path.join(base, "docker-compose.yml"), old, new)
  with pytest.raises(ValueError, match=message):
    deployment.check_deployment(base)


def test_missing_versions_and_warmup_files_are_named(deployed, tmp_path):
  base = _copy(deployed, tmp_path)
  os.remove(os.path.join(base, "tiny", "2", export.WARMUP_FILE))
  with pytest.raises(ValueError, match="no warmup file"):
    deployment.check_deployment(base)
  shutil.rmtree(os.path.join(base, "tiny"))
  with pytest.raises(ValueError, match="model 'tiny': no version"):
    deployment.check_deployment(base)
