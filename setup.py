"""tfp-realnvp: Real NVP density models as TFP bijectors, trained with Keras 3."""

import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent


def package_page_readme(text):
  """The README as the package index shows it. Links into the source tree
  (docs/, CHANGELOG.md, LICENSE, ...) do not resolve on a package page, so
  each becomes its text with the file named after it (the files are in the
  source distribution, MANIFEST.in); a figure from the tree is dropped.
  Absolute links stay."""
  def relative(target):
    return not re.match(r"[a-z][a-z0-9+.-]*:|#", target)

  def image(match):
    return "" if relative(match.group(2)) else match.group(0)

  def link(match):
    label, target = match.group(1), match.group(2)
    return f"{label} (`{target}`)" if relative(target) else match.group(0)

  text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)\n?", image, text)
  return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", link, text)


setup(
    name="tfp-realnvp",
    version="0.1.0",
    description=("Real NVP (Dinh et al., ICLR 2017) as TensorFlow Probability "
                 "bijectors with Keras 3 training and TF Serving export"),
    # The user's README (the guides and measurements are in docs/).
    long_description=package_page_readme(
        (HERE / "README.md").read_text(encoding="utf-8")),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tfp_realnvp", "tfp_realnvp.*",
                                    "training", "training.*"]),
    package_data={"training.configs": ["*.json"],
                  "tfp_realnvp": ["weights/*.keras", "weights/*.json"]},
    entry_points={
        "console_scripts": [
            "realnvp-train=training.train:main",
            "realnvp-evaluate=training.evaluate:main",
            "realnvp-sample=training.sample:main",
            "realnvp-export=training.export:main",
            "realnvp-score=training.score:main",
        ],
    },
    install_requires=[
        # tf-keras (imported by TFP 0.25) requires the `tensorflow` wheel
        # itself; GPU users add `tensorflow[and-cuda]==2.21.*`.
        "tensorflow==2.21.*",
        "tensorflow-probability==0.25.0",
        "tf-keras==2.21.*",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "tensorflow-datasets>=4.9,<4.10",
        # tensorflow-datasets 4.9.x imports it at run time
        # (core/dataset_builder.py, DatasetBuilder.code_path) although its
        # metadata requires it only for Python < 3.9.
        "importlib_resources>=6",
        "scikit-learn>=1.4",
        "pillow>=10",
        "tensorboard>=2.20",
        "tensorflow-serving-api==2.21.*",
        # tfp_realnvp.deployment reads docker-compose files
        "pyyaml>=6",
    ],
    extras_require={
        # pytest-xdist: pytest.ini runs the tests in one process per core.
        "test": ["pytest>=8", "pytest-xdist>=3.8"],
        # `python -m bench`'s PyTorch peers. torch pinned to the CPU build
        # that pip takes from this machine's disk (any torch without a
        # version pulls a multi-GB CUDA build from PyPI).
        # scikit-image: bench.photos' colour patches (its photos ship inside
        # the wheel: no download).
        "bench": ["torch==2.13.0", "normflows==1.7.3", "scikit-image>=0.22"],
        # The documentation site (mkdocs.yml, docs/): `mkdocs build --strict`.
        # mkdocstrings-python reads the source statically (griffe): building
        # the API pages imports no TensorFlow.
        "docs": ["mkdocs-material>=9.5", "mkdocstrings-python>=1.10"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "License :: OSI Approved :: Apache Software License",
    ],
)
