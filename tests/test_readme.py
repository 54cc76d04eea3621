"""The README's promises: its Python quick start runs as written, and every
relative link and image path in it exists in the repository."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
README = os.path.join(ROOT, "README.md")
MARKER = "<!-- quickstart -->"
# The README is for users; the measurement logs live in docs/ (issue 31).
MAX_README_LINES = 200


def _readme():
  with open(README, encoding="utf-8") as f:
    return f.read()


def quickstart_source(text):
  """The first ```python block after the quick-start marker."""
  start = text.find(MARKER)
  if start < 0:
    raise AssertionError(f"README.md has no {MARKER} marker")
  match = re.compile(r"^```python\n(.*?)^```", re.S | re.M).search(
      text, start)
  if match is None:
    raise AssertionError(f"no ```python block after {MARKER} in README.md")
  return match.group(1)


def _without_code(text):
  """The README without fenced code blocks and inline code spans."""
  text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
  return re.sub(r"`[^`\n]*`", "", text)


def relative_targets(text):
  """Relative link and image targets of the README (no URLs, no anchors)."""
  text = _without_code(text)
  targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)",
                       text)
  targets += re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", text)
  found = []
  for target in targets:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(
        ("#", "//")):
      continue  # http(s):, mailto:, in-page anchors
    found.append(target.split("#", 1)[0])
  return [t for t in found if t]


def test_readme_is_short():
  lines = _readme().count("\n")
  assert lines <= MAX_README_LINES, (
      f"README.md has {lines} lines; keep it a user's README (at most "
      f"{MAX_README_LINES}) and move the rest to docs/")


def test_readme_links_exist():
  targets = relative_targets(_readme())
  assert "docs/images/samples_mnist.png" in targets  # the figure at the top
  missing = [t for t in targets
             if not os.path.exists(os.path.join(ROOT, t))]
  assert not missing, f"README.md links to missing paths: {missing}"


def test_link_extraction():
  text = ("![a](docs/x.png) [b](docs/y.md#part) [c](https://e.org) "
          "[d](#top) `[e](not/a/link.md)`\n```\n[f](code.md)\n```\n"
          '<img src="docs/z.png">')
  assert relative_targets(text) == ["docs/x.png", "docs/y.md", "docs/z.png"]


def test_package_page_has_no_link_into_the_tree():
  """setup.py's long_description (the package index page) names the files
  instead of linking them: relative links do not resolve there. Every file
  it names ships in the source distribution (MANIFEST.in)."""
  page = subprocess.run([sys.executable, "setup.py", "--long-description"],
                        cwd=ROOT, capture_output=True, text=True, check=True
                        ).stdout
  readme_targets = relative_targets(_readme())
  assert readme_targets and relative_targets(page) == []
  assert "https://arxiv.org/abs/1605.08803" in page  # absolute links stay
  with open(os.path.join(ROOT, "MANIFEST.in"), encoding="utf-8") as f:
    manifest = f.read()
  for target in readme_targets:
    if target.startswith("docs/images/"):
      continue  # the figure is dropped from the page
    assert f"`{target}`" in page, target
    top = target.split("/")[0]
    assert (top in manifest.split() or
            f"recursive-include {top}" in manifest), target


def test_quickstart_runs_as_written(tmp_path, monkeypatch):
  source = quickstart_source(_readme())
  monkeypatch.chdir(tmp_path)  # its export lands in tmp_path/saved_models
  namespace = {"__name__": "__readme_quickstart__"}
  exec(compile(source, "README.md (quick start)", "exec"), namespace)  # pylint: disable=exec-used

  bits_per_dim = namespace["bits_per_dim"]
  assert isinstance(bits_per_dim, float) and np.isfinite(bits_per_dim)
  assert 0 < bits_per_dim < 16
  assert np.isfinite(np.asarray(namespace["log_prob"])).all()
  assert tuple(namespace["samples"].shape) == (16, 8, 8, 1)
  x = np.asarray(namespace["x"])
  np.testing.assert_allclose(np.asarray(namespace["x_back"]), x, atol=1e-2)
  assert tuple(namespace["z"].shape) == (x.shape[0], 64)
  version_dir = namespace["version_dir"]
  assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
  here = os.path.realpath(tmp_path)
  assert os.path.commonpath([os.path.realpath(version_dir), here]) == here


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__, "-q"]))


def test_the_cli_guide_holds_the_config_table_generated_from_fields():
  """docs/guides/cli.md's config-key table is `configs.markdown_table()`
  (generated from FIELDS): a key added, removed or re-documented without
  the page fails here; paste the function's output into the page."""
  from training import configs  # pylint: disable=import-outside-toplevel
  with open(os.path.join(ROOT, "docs", "guides", "cli.md"),
            encoding="utf-8") as f:
    page = f.read()
  assert configs.markdown_table() in page
