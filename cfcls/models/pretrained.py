"""Import torchvision ResNet checkpoints (ImageNet weights) into the Flax tree.

Accepted files:

* ``.pth`` / ``.pt``: a torchvision state dict, read with
  ``torch.load(path, map_location='cpu', weights_only=True)`` (needs torch);
  a dict wrapping it under ``'state_dict'`` or ``'model'`` and DataParallel's
  ``'module.'`` prefixes are accepted.
* ``.npz`` with torchvision keys (``conv1.weight``, ``bn1.running_mean``,
  ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.weight``,
  ...) and torch layouts (convs OIHW): e.g. ``np.savez(path, **{k: v.numpy()
  for k, v in state_dict.items()})``.
* ``.npz`` already converted by ``data_prep/convert_resnet_weights.py``
  ("converted format"): keys ``'params/<module path>/<name>'`` and
  ``'batch_stats/<module path>/<name>'`` relative to the ResNet module, in
  Flax layouts (conv kernels HWIO), e.g. ``params/layer1_0/conv1/kernel``,
  ``params/bn1/scale``, ``batch_stats/bn1/mean``; plus a ``__format__`` entry
  holding ``CONVERTED_FORMAT``.

Key mapping (torchvision -> Flax, see ``cfcls.models.resnet``): a numeric part
joins the name before it (``layer1.0.downsample.1`` -> ``layer1_0/downsample_1``);
4-D ``weight`` -> ``params/kernel`` transposed OIHW -> HWIO; BN ``weight`` ->
``params/scale``, ``bias`` -> ``params/bias``, ``running_mean`` ->
``batch_stats/mean``, ``running_var`` -> ``batch_stats/var``;
``num_batches_tracked`` is ignored; keys with no place in the model (``fc.*``)
are left over. (torch keeps the unbiased batch variance in ``running_var`` and
flax the biased one when training resumes: irrelevant for initialisation.)
"""

from collections.abc import Mapping
import dataclasses
import os
import re

from absl import logging
import flax
import jax.numpy as jnp
import numpy as np

CONVERTED_FORMAT = "cfcls-resnet-v1"
CONVERTED_FORMAT_KEY = "__format__"
_COLLECTIONS = ("params", "batch_stats")
_BN_LEAVES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}
_IGNORED_LEAVES = ("num_batches_tracked",)
# Left over without complaint in strict mode: the ImageNet classifier.
_EXPECTED_LEFT_OVER = re.compile(r"^fc\.")


@dataclasses.dataclass
class ImportReport:
  """What an import did, by key.

  Attributes:
    used: checkpoint keys copied into the model.
    missing: model variables (``'collection/path/name'``, with the prefix)
      under the prefix that no checkpoint key filled.
    left_over: checkpoint keys with no place in the model (e.g. ``fc.weight``).
    ignored: checkpoint keys skipped on purpose (``num_batches_tracked``).
  """
  used: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  left_over: list[str] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    def few(keys):
      return ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    lines = [f"{len(self.used)} keys used, {len(self.missing)} missing, "
             f"{len(self.left_over)} left over, {len(self.ignored)} ignored"]
    if self.missing:
      lines.append(f"missing: {few(self.missing)}")
    if self.left_over:
      lines.append(f"left over: {few(self.left_over)}")
    return "\n".join(lines)


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Reads a .pth/.pt (with torch) or .npz checkpoint into a flat numpy dict."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint {path} does not exist")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  if ext in (".pth", ".pt"):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError(
          f"reading {path} needs torch, which is not installed; install torch "
          "or save the state dict as .npz with torchvision's key names") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
      if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
        state = state[wrapper]
    if not isinstance(state, dict):
      raise ValueError(f"{path} holds a {type(state).__name__}, not a state "
                       "dict of tensors")
    out = {}
    for key, value in state.items():
      if not hasattr(value, "detach"):
        raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, "
                         "not a tensor")
      out[key.removeprefix("module.")] = value.detach().cpu().numpy()
    return out
  raise ValueError(f"checkpoint {path} has extension {ext!r}; expected .pth, "
                   ".pt or .npz")


def torchvision_to_flax_path(key: str, ndim: int):
  """Flax ``(collection, path tuple)`` of a torchvision key, or None to ignore.

  Args:
    key: e.g. ``'layer1.0.downsample.0.weight'``.
    ndim: rank of the tensor (4 = conv weight).

  Returns:
    e.g. ``('params', ('layer1_0', 'downsample_0', 'kernel'))``; None for
    ``num_batches_tracked``.
  """
  *modules, leaf = key.split(".")
  if leaf in _IGNORED_LEAVES:
    return None
  path = []
  for part in modules:
    if part.isdigit() and path:
      path[-1] = f"{path[-1]}_{part}"
    else:
      path.append(part)
  if leaf == "weight" and ndim in (2, 4):  # conv or linear (fc)
    return "params", tuple(path) + ("kernel",)
  if leaf in _BN_LEAVES:
    collection, name = _BN_LEAVES[leaf]
    return collection, tuple(path) + (name,)
  raise ValueError(f"checkpoint key {key!r} (rank {ndim}) is not a torchvision "
                   "ResNet parameter")


def to_flax_layout(checkpoint: dict[str, np.ndarray]):
  """Checkpoint dict -> ({(collection, path): (source key, array)}, ignored).

  Handles both torchvision keys (transposing conv OIHW -> HWIO and linear
  [out, in] -> [in, out]) and the converted format.
  """
  entries, ignored = {}, []
  if CONVERTED_FORMAT_KEY in checkpoint:
    fmt = str(np.asarray(checkpoint[CONVERTED_FORMAT_KEY]))
    if fmt != CONVERTED_FORMAT:
      raise ValueError(f"converted checkpoint format {fmt!r} is not "
                       f"{CONVERTED_FORMAT!r}")
    for key, value in checkpoint.items():
      if key == CONVERTED_FORMAT_KEY:
        continue
      collection, *path = key.split("/")
      if collection not in _COLLECTIONS or not path:
        raise ValueError(f"converted checkpoint key {key!r} does not start "
                         f"with one of {_COLLECTIONS}")
      entries[(collection, tuple(path))] = (key, np.asarray(value))
    return entries, ignored
  for key, value in checkpoint.items():
    value = np.asarray(value)
    target = torchvision_to_flax_path(key, value.ndim)
    if target is None:
      ignored.append(key)
      continue
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif value.ndim == 2:
      value = value.T  # [out, in] -> [in, out]
    entries[target] = (key, value)
  return entries, ignored


def load_torchvision_resnet(checkpoint, variables, *, prefix=("backbone",),
                            strict: bool = True):
  """Copies a torchvision ResNet checkpoint into a model's variables.

  Args:
    checkpoint: path of a .pth / .pt / .npz file (see the module docstring),
      or an already loaded mapping of key -> numpy array in either format.
    variables: ``{'params': ..., 'batch_stats': ...}`` of the model (arrays or
      ``jax.ShapeDtypeStruct``s, e.g. from ``jax.eval_shape(model.init, ...)``).
    prefix: module path of the ResNet inside the model: ``('backbone',)`` for
      ``DeepLabV3Plus``, ``()`` for a bare ``ResNet``.
    strict: raise ValueError if a backbone variable is missing from the
      checkpoint or a checkpoint key other than ``fc.*`` is left over (e.g. a
      ResNet-101 checkpoint into a ResNet-50).

  Returns:
    ``(new_variables, report)``: plain nested dicts with the backbone's
    variables replaced by the checkpoint's (in each target's dtype), every
    other variable unchanged; and an ``ImportReport``.

  Raises:
    ValueError: a shape mismatch (naming the key and both shapes), a key that
      is not a ResNet parameter, or, with ``strict``, missing/left-over keys.
  """
  prefix = tuple(prefix)
  variables = flax.core.unfreeze(variables)
  flat = {}
  for collection in _COLLECTIONS:
    if collection not in variables:
      raise ValueError(f"variables have no {collection!r} collection; pass the "
                       "whole variables dict of the model")
    for path, leaf in flax.traverse_util.flatten_dict(
        variables[collection]).items():
      flat[(collection, path)] = leaf
  targets = {k for k in flat if k[1][:len(prefix)] == prefix}
  if not any(k[0] == "params" for k in targets):
    raise ValueError(f"the model has no parameters under prefix {prefix}")
  if isinstance(checkpoint, Mapping):
    source = "the given state dict"
    entries, ignored = to_flax_layout(dict(checkpoint))
  else:
    source = f"checkpoint {os.fspath(checkpoint)}"
    entries, ignored = to_flax_layout(read_checkpoint(checkpoint))
  report = ImportReport(ignored=sorted(ignored, key=_natural_order))
  filled = set()
  for (collection, path), (key, value) in entries.items():
    target = (collection, prefix + path)
    if target not in targets:
      report.left_over.append(key)
      continue
    expected = flat[target]
    if tuple(value.shape) != tuple(expected.shape):
      raise ValueError(
          f"{path_str(target)}: checkpoint key {key!r} has shape "
          f"{tuple(value.shape)} (in the Flax layout) but the model expects "
          f"{tuple(expected.shape)}")
    flat[target] = jnp.asarray(value, dtype=expected.dtype)
    filled.add(target)
    report.used.append(key)
  report.missing = sorted((path_str(k) for k in targets - filled),
                          key=_natural_order)
  report.left_over.sort(key=_natural_order)
  if strict:
    unexpected = [k for k in report.left_over
                  if not _EXPECTED_LEFT_OVER.match(k)]
    if report.missing or unexpected:
      raise ValueError(
          f"{source} does not match the model's ResNet (a different "
          f"depth or width?):\n{report.summary()}"
          + (f"\nunexpected left over: {', '.join(unexpected[:5])}"
             if unexpected else ""))
  new_variables = dict(variables)
  for collection in _COLLECTIONS:
    new_variables[collection] = flax.traverse_util.unflatten_dict(
        {path: leaf for (c, path), leaf in flat.items() if c == collection})
  return new_variables, report


def _natural_order(key: str):
  """Sort key: 'layer3.6' before 'layer3.10'."""
  return [(0, int(part), "") if part.isdigit() else (1, 0, part)
          for part in re.split(r"(\d+)", key)]


def path_str(target) -> str:
  """``('params', ('a', 'b'))`` -> ``'params/a/b'``."""
  collection, path = target
  return "/".join((collection,) + tuple(path))


def converted_arrays(variables, *, prefix=()) -> dict[str, np.ndarray]:
  """The converted-format dict (for ``np.savez``) of a ResNet's variables.

  Args:
    variables: ``{'params', 'batch_stats'}`` of a model.
    prefix: module path of the ResNet in it (``()`` for a bare ``ResNet``).
  """
  prefix = tuple(prefix)
  out = {CONVERTED_FORMAT_KEY: np.asarray(CONVERTED_FORMAT)}
  for collection in _COLLECTIONS:
    for path, leaf in flax.traverse_util.flatten_dict(
        flax.core.unfreeze(variables[collection])).items():
      if path[:len(prefix)] == prefix:
        out["/".join((collection,) + path[len(prefix):])] = np.asarray(leaf)
  return out


def init_from(path, variables, *, prefix=("backbone",), strict: bool = True):
  """Initialises a model's backbone from a checkpoint (for ``config.init_from``).

  ``path`` is a torchvision .pth/.npz or an .npz written by
  ``data_prep/convert_resnet_weights.py``. Logs the import report.

  Args:
    path: the checkpoint file.
    variables: the freshly initialised ``{'params', 'batch_stats'}``.
    prefix: module path of the ResNet (``('backbone',)`` for DeepLabV3+).
    strict: see ``load_torchvision_resnet``.

  Returns:
    ``(new_variables, report)`` as ``load_torchvision_resnet``.
  """
  new_variables, report = load_torchvision_resnet(
      path, variables, prefix=prefix, strict=strict)
  logging.info("init_from %s: %s", path, report.summary())
  return new_variables, report
