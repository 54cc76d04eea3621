"""The backed-up training state of a run (`backup/`): `ResumableBackup`, a
`keras.callbacks.BackupAndRestore` whose state survives a crash at any
instant and whose damaged state is reported instead of crashing every
rerun."""

import json
import os
import shutil

import keras

from tfp_realnvp import atomic
from tfp_realnvp import digests
from training import console
from training import rundir


def _epochs_text(restored, lost):
  """What a fallback from the newest state to `restored` epochs loses."""
  if lost is None or lost <= restored:
    return "the epochs after that state are lost and"
  if lost == restored + 1:
    return f"epoch {lost} is lost and"
  return f"epochs {restored + 1} to {lost} are lost and"


class DamagedBackupError(Exception):
  """One backed-up training state cannot be used (the message names the
  file and why)."""


# Keras' name for the metadata of the latest backed-up state.
METADATA_FILE = "training_metadata.json"


def _epoch_or_none(metadata_path):
  try:
    with open(metadata_path, encoding="utf-8") as f:
      epoch = json.load(f).get("epoch")
    return epoch if isinstance(epoch, int) else None
  except (OSError, ValueError, AttributeError):
    return None


def saved_epoch(backup_dir):
  """The epoch the latest backed-up state in `backup_dir` records (no
  weights are read); None when there is none or it cannot be read."""
  return _epoch_or_none(os.path.join(backup_dir, METADATA_FILE))


class ResumableBackup(keras.callbacks.BackupAndRestore):
  """`BackupAndRestore` whose state survives a crash at any instant, and
  whose damaged state is reported instead of crashing every rerun.

  - Files keep Keras' names (`latest.weights.h5`, `training_metadata.json`
    and their `.bkp` copies of the previous epoch) but every write is atomic
    (temp file + rename), and the metadata records the SHA-256 of the
    weights file it belongs to, so a pair that a crash left half-replaced is
    recognised.
  - `restore()` (called before `fit`, or by `on_train_begin`) loads the
    newest usable state: the latest, else the previous one; a damaged file
    (truncated, invalid JSON, not matching its partner) is named in a
    warning that says what is lost, renamed `<file>.damaged` so it is never
    copied over a good state, and when no state is usable training starts
    again from epoch 1 (with a warning) instead of failing.
  - The state is kept when training ends (`delete_checkpoint=False`): the
    run removes it once everything after training (evaluation, export) is
    done.
  """

  def __init__(self, backup_dir):
    super().__init__(backup_dir, double_checkpoint=True,
                     delete_checkpoint=False)
    self.restored_epoch = None  # set by restore()

  # --- saving ----------------------------------------------------------------

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    for src, dst in ((self._weights_path, self._prev_weights_path),
                     (self._training_metadata_path,
                      self._prev_training_metadata_path)):
      if os.path.exists(src):
        with atomic.atomic_path(dst) as tmp:
          shutil.copyfile(src, tmp)
    with atomic.atomic_path(self._weights_path, suffix=".weights.h5") as tmp:
      self.model.save_weights(tmp, overwrite=True)
      digest = digests.sha256_file(tmp)
    rundir.write_json({"epoch": self._current_epoch,
                       "batch": self._last_batch_seen,
                       "weights_sha256": digest}, self._training_metadata_path)

  # --- restoring -------------------------------------------------------------

  def _read_state(self, weights_path, metadata_path):
    """The epoch of one (weights, metadata) pair; raises DamagedBackupError."""
    if not os.path.exists(metadata_path):
      raise DamagedBackupError(f"{metadata_path} is missing (the epoch of "
                               f"{weights_path} is unknown)")
    if not os.path.exists(weights_path):
      raise DamagedBackupError(f"{weights_path} is missing")
    try:
      with open(metadata_path, encoding="utf-8") as f:
        metadata = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
      raise DamagedBackupError(f"{metadata_path} cannot be read ({e})") from e
    except json.JSONDecodeError as e:
      raise DamagedBackupError(
          f"{metadata_path} is not valid JSON ({e.msg}: line {e.lineno} "
          f"column {e.colno}; truncated?)") from e
    epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
      raise DamagedBackupError(f"{metadata_path} holds no epoch number "
                               f"(got {metadata!r})")
    expected = metadata.get("weights_sha256")
    if expected is not None and digests.sha256_file(weights_path) != expected:
      raise DamagedBackupError(
          f"{weights_path} is not the file {metadata_path} was written for "
          f"(its SHA-256 differs: damaged, or the process died between "
          f"writing the two)")
    return epoch

  def _load_weights(self, weights_path):
    if (self.model.optimizer is not None and
        not self.model.optimizer.built):
      self.model.optimizer.build(self.model.trainable_variables)
    try:
      self.model.load_weights(weights_path)
    except (OSError, KeyError, ValueError) as e:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise DamagedBackupError(
          f"{weights_path} is not a readable Keras weights file "
          f"({type(e).__name__}: {reason})") from e

  def _set_aside(self, *paths):
    for path in paths:
      if os.path.exists(path):
        os.replace(path, path + ".damaged")

  def restore(self, model=None):
    """Loads the newest usable backed-up state into the model; returns the
    number of epochs it had finished (0 when there is none)."""
    if model is not None:
      self.set_model(model)
    if self.restored_epoch is not None:
      return self.restored_epoch
    candidates = [("latest", self._weights_path,
                   self._training_metadata_path),
                  ("previous", self._prev_weights_path,
                   self._prev_training_metadata_path)]
    problems, lost = [], None
    variables = list(self.model.variables)
    if self.model.optimizer is not None:
      if not self.model.optimizer.built:
        self.model.optimizer.build(self.model.trainable_variables)
      variables += list(self.model.optimizer.variables)
    snapshot = None
    for label, weights_path, metadata_path in candidates:
      if not (os.path.exists(weights_path) or os.path.exists(metadata_path)):
        continue
      try:
        epoch = self._read_state(weights_path, metadata_path)
        if label == "previous":
          # Keras loads only files named *.weights.h5: the previous state
          # becomes the latest one (whose damaged files are set aside).
          for src, dst in ((weights_path, self._weights_path),
                           (metadata_path, self._training_metadata_path)):
            with atomic.atomic_path(dst) as tmp:
              shutil.copyfile(src, tmp)
        if snapshot is None:
          snapshot = [v.numpy() for v in variables]
        self._load_weights(self._weights_path)
      except DamagedBackupError as e:
        problems.append(str(e))
        if label == "latest":
          lost = _epoch_or_none(metadata_path)
        else:  # drop the copies made above (the originals are set aside)
          for copy in (self._weights_path, self._training_metadata_path):
            if os.path.exists(copy):
              os.remove(copy)
        self._set_aside(weights_path, metadata_path)
        continue
      if problems:
        console.warn(f"{'; '.join(problems)}. Resuming from the previous "
                     f"backup instead ({weights_path}, after epoch {epoch}): "
                     f"{_epochs_text(epoch, lost)} trained again.")
      self.restored_epoch = epoch
      self.model._initial_epoch = epoch  # pylint: disable=protected-access
      return epoch
    if snapshot is not None:  # a failed load may have assigned some values
      for v, value in zip(variables, snapshot):
        v.assign(value)
    if problems:
      console.warn(f"{'; '.join(problems)}. No usable backup is left in "
                   f"{self.backup_dir}: training starts again from epoch 1 "
                   f"({_epochs_text(0, lost)} trained again; "
                   f"checkpoints/best.keras and its best value are kept).")
    self.restored_epoch = 0
    return 0

  def on_train_begin(self, logs=None):
    self.restore()
