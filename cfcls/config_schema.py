"""The config schema: every config field, its default and its allowed values.

This is the one place a default is written. Config files (configs/*.py)
start from `get_config()` and override a few fields;
`cfcls.training.config_utils.validate_config` rejects any field that is not defined
here (a typo in a config file or on the command line is an error) and
impossible values, before any data is prepared. Library code reads validated
values and never supplies defaults of its own; functions that accept a
partial config (a dict of a few fields, as tests use) complete it from here
with `complete()`.

The defaults are the paper's VOC-subset settings (docs/method.md, section 6).
"""

def model_fields() -> dict:
  """config.model's fields and defaults as a plain dict.

  (cfcls.models reads it without ml_collections, which an accelerator
  machine may lack.)
  """
  return dict(
      # deeplabv3plus (ResNet DeepLabV3+, the paper's VOC/Cityscapes network)
      # | unet | erfnet (the paper's inspection-data networks; README.md,
      # "Choosing the network"). backbone, output_stride, aspp_channels,
      # decoder_channels and low_level_channels are DeepLabV3+'s only.
      name='deeplabv3plus',
      backbone='resnet101',  # resnet18 | resnet34 | resnet50 | resnet101 | resnet152
      output_stride=16,  # 8 | 16
      dtype='float32',  # float32 | bfloat16 (compute dtype)
      width=1.0,  # multiplier of all channel counts
      aspp_channels=256,
      decoder_channels=256,
      low_level_channels=48,
      mlc_hidden=256,
      mlc_features='backbone',  # backbone (the paper) | decoder: what the
      # MLC head pools
      bn_momentum=0.9,  # flax decay of the BatchNorm running averages
      unet_base=64,  # unet: channels of the first level (x width)
      # erfnet: spatial dropout rates in training of the 64- and the
      # 128-channel encoder blocks (the paper's); eval is deterministic.
      erfnet_dropout=(0.03, 0.3),
  )


def get_model_config():
  """config.model: the network (fields of cfcls.models.create_model)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(model_fields())


def get_data_config():
  """config.data: the dataset and input pipeline (fields of cfcls.data)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  data = ml_collections.ConfigDict()
  data.name = 'scribble_voc'  # tfds builder: scribble_voc | scribble_cityscapes | scribble_folder | synthetic_scenes
  data.builder_config = 'subset6'  # e.g. scribble_voc: full21 | subset6
  data.manual_dir = config_dict.placeholder(str)  # raw data folder (tfds manual_dir)
  data.data_dir = '~/tensorflow_datasets'  # where tfds stores prepared data
  data.train_split = 'train'
  data.eval_split = 'validation'
  data.crop_size = 321
  data.scale_range = (0.5, 2.0)
  data.flip = True
  data.eval_pad_size = config_dict.placeholder(int)  # pad eval images to this
  # size; None = the split's largest image
  data.annotation = 'scribbles'  # scribbles | dots
  data.shuffle_buffer = 1000
  data.skip_corrupt = True  # log and skip unreadable images (False: error)
  # scribble_folder: when the folder changed since it was prepared, 'prepare'
  # it again or stop with an 'error' that says what changed.
  data.on_folder_change = 'prepare'
  data.synthetic = ml_collections.ConfigDict()
  data.synthetic.num_train = 400
  data.synthetic.num_val = 100
  data.synthetic.image_size = 128
  data.synthetic.seed = 0
  # Closed-form targets (cfcls.data.targets): the matte alpha* = A^-1 lam D S
  # of every training image, solved once after preparation, cached under the
  # dataset's data_dir and augmented with the image (bilinear). Needed by
  # cfm_norm='target' and the losses 'two_stage' and 'cfm_soft'; lam, eps and
  # radius should equal config.lam, laplacian_eps and laplacian_radius.
  data.targets = ml_collections.ConfigDict()
  data.targets.enabled = False
  data.targets.lam = 100.0
  data.targets.eps = 1e-7
  data.targets.radius = 1
  # > 0: also the check mattes min(alpha*, alpha* with windows of this
  # radius); 'two_stage' then keeps an object label only where they agree
  # (the vetted teacher, docs/method.md). 0: the mattes alone.
  data.targets.check_radius = 0
  return data


def get_config():
  """The base config (paper settings for the VOC subset)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict()
  config.model = get_model_config()
  config.data = get_data_config()

  # Loss: 'cfm' (K-1 mattes, closed-form matting residual + beta * MLC BCE),
  # 'pce' (K softmax logits, cross-entropy on scribbled pixels), 'ce'
  # (K softmax logits, cross-entropy on full masks), 'two_stage' (K logits,
  # cross-entropy on the closed-form labels: targets >= target_threshold,
  # scribbled pixels kept) or 'cfm_soft' (K logits, soft cross-entropy towards
  # the closed-form mattes, background 1 - max). The last two need
  # data.targets.enabled.
  config.loss = 'cfm'
  config.lam = 100.0  # lambda of the matting system (L + lam D) alpha = lam D S
  config.beta = 1.0  # weight of the MLC loss
  config.baseline_mlc = False  # also train the MLC head (beta) with pce / ce
  config.class_weights = config_dict.placeholder(tuple)  # K-1 weights w_c, None = 1
  # Which classes' matting systems count per image: 'scribbles' (the paper:
  # only classes with a scribble in the crop) or 'all' (every class; for an
  # absent class the system asks for alpha = 0 on every scribbled pixel).
  config.cfm_classes = 'scribbles'
  # How the residual r = (L + lam D) alpha - lam D S is measured: 'residual'
  # (the paper: ||r||^2) or 'energy' (r in the A^-1 norm = the matting energy
  # alpha^T L alpha + lam ||D (alpha - S)||^2; same minimiser, better
  # conditioned; see cfcls.losses.cfm_loss).
  # 'target' (needs data.targets.enabled): ||alpha - alpha*||^2 / N towards
  # the image's closed-form matte alpha* (the same minimiser in the identity
  # metric) + cfm_energy_weight * the 'energy' term.
  config.cfm_norm = 'residual'
  config.cfm_energy_weight = 0.0  # cfm_norm='target' only
  config.target_threshold = 0.5  # 'two_stage': closed-form label threshold
  # 'two_stage': leave out pixels whose closed-form label is unsure (largest
  # alpha* within target_margin of the threshold or of the runner-up).
  config.target_margin = 0.0
  # 'two_stage': from step label_drop_after * num_train_steps on, leave out
  # the closed-form labels (not scribbles) to which the network itself gives
  # a probability below label_drop_prob (a confident disagreement). 0 = off.
  config.label_drop_prob = 0.0
  config.label_drop_after = 0.5
  config.laplacian_eps = 1e-7
  # Softmax losses ('pce', 'ce', 'two_stage', 'cfm_soft'): + laplacian_weight
  # * sum_c p_c^T L p_c / N, the matting Laplacian energy of the network's
  # class probabilities (cfcls.losses.laplacian_energy), with L built at
  # eps=laplacian_reg_eps. 0 = off.
  config.laplacian_weight = 0.0
  config.laplacian_reg_eps = 1e-5
  config.laplacian_radius = 1
  # Arithmetic of the per-window statistics in the training step: 'float64'
  # (a float64 island: fast on CPUs and H100/H200-class GPUs), 'float32'
  # (no float64 anywhere: for TPUs and GPUs with slow float64; same accuracy,
  # docs/method.md, section 1) or 'auto' (float32 on TPUs, else float64).
  config.laplacian_precision = 'float64'

  # Optimisation.
  config.optimizer = 'adam'  # adam | sgd (with momentum)
  config.learning_rate = 1e-3  # peak learning rate
  config.momentum = 0.9  # sgd only
  config.lr_schedule = 'poly'  # poly | constant
  config.lr_power = 0.9  # poly decay: lr * (1 - t/T)^power
  config.end_learning_rate = 0.0
  config.warmup_steps = 0  # linear warmup from 0 to learning_rate
  config.head_lr_multiplier = 1.0  # lr of everything but the backbone
  config.weight_decay = 0.0  # decoupled, kernels only
  config.grad_clip = 0.0  # global-norm clipping; 0 = off
  # Evaluation and prediction use an exponential moving average of the
  # weights (and BatchNorm statistics) with this decay; 0 = the last step's.
  config.ema_decay = 0.0
  config.batch_size = 10  # global batch over all devices and hosts
  config.num_train_steps = 20000
  config.seed = 0
  config.init_from = config_dict.placeholder(str)  # torchvision ResNet weights

  # Logging, evaluation and checkpoints.
  config.log_every_steps = 50
  config.eval_every_steps = 1000  # 0 = only at the end
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3  # latest checkpoints kept (the best is kept apart)
  config.eval_batch_size = 8  # global
  config.num_summary_images = 4  # images written to TensorBoard per eval
  config.thresholds = (0.4, 0.5, 0.6, 0.7)  # reported label thresholds
  config.threshold = 0.5  # the one used to pick the best checkpoint
  config.mlc_gate = True  # zero the mattes of classes the MLC head rejects
  # Evaluation and prediction only (not in the paper; 0 = off): filter the
  # network's per-pixel outputs (mattes, or class probabilities for pce/ce)
  # with the guided filter of this window radius, the image as the guide
  # (cfcls/matting/guided_filter.py), before labels are taken.
  config.guided_filter_radius = 0
  # How evaluation and prediction refine the network's outputs: 'guided'
  # (the guided filter above; radius 0 = off), 'none', 'matting' (the
  # matting system seeded by the network's confident pixels, solved per
  # image on the host: cfcls/matting/refine.py), or 'soft_matting' (the
  # guided filter, then the soft matting system (L + lam W) x = lam W p on
  # its probabilities p, W = their confidence, per image on the host).
  config.refine = 'guided'
  config.refine_threshold = 0.8  # 'matting': seeds where a class prob >= this
  config.refine_erode = 2  # 'matting': seeds this many px inside its region
  # 'matting': eps of the seeded system (lam: config.lam). 0.8, 2 and 1e-4 were
  # the most frequent best of a small grid on the training images of the two
  # synthetic families (benchmarks/README.md, issue 30).
  config.refine_eps = 1e-4
  config.refine_lam = 0.1  # 'soft_matting': lam, the prior's weight
  config.refine_weight = 'max'  # 'soft_matting': W, 'max' or 'margin' prob
  config.guided_filter_eps = 1e-3  # its ridge weight (colours in [0, 1])
  # Test-time augmentation (evaluation and prediction, before any refine):
  # the network's outputs averaged over these image scales and, with
  # tta_flip, their left-right mirrors (cfcls.inference.network_outputs).
  config.tta_scales = (1.0,)
  config.tta_flip = False

  # Prediction (train.py --mode=predict).
  config.predict_pad_multiple = 32  # pad images to a multiple (fewer compiles)
  config.predict_after_training = 0  # after training, predict this many
  # validation images into WORKDIR/predictions (the demo does)

  # Matting metrics against the closed-form solution (final evaluation only).
  config.matting_metrics = True
  config.matting_max_images = 16  # validation images used; 0 = all
  config.matting_gradient_sigma = 1.4  # Gaussian derivative filter sigma

  # Settings by network: per_network.<model.name> is a partial config (e.g.
  # model.width, num_train_steps) whose fields fill the ones the config
  # leaves unset (None) once model.name is known, i.e. after the command
  # line (`apply_per_network`, which `config_utils.validate_config` runs).
  # A value given explicitly (--config.model.width=0.5) is not None and wins.
  # configs/demo.py uses it for a width and schedule per network.
  config.per_network = ml_collections.ConfigDict()
  return config


def apply_per_network(config) -> list:
  """Fills the unset (None) fields of `config` from per_network[model.name].

  In place; fields that hold a value (the config file's, or the command
  line's) are kept. Returns the filled fields as ['model.width=0.5', ...].
  """
  table = config.get('per_network') or {}
  entry = table.get(config.model.name) if hasattr(table, 'get') else None
  filled = []

  def fill(node, settings, prefix):
    for key, value in settings.items():
      if key not in node:
        continue  # an unknown field: the schema check names it
      if hasattr(value, 'items'):
        if hasattr(node[key], 'items'):
          fill(node[key], value, f'{prefix}{key}.')
      elif node[key] is None and value is not None:
        node[key] = value
        filled.append(f'{prefix}{key}={value!r}')

  if entry is not None:
    fill(config, entry, '')
  return filled


def use_closed_form_labels(config):
  """The measured scribble recipe (issue 15), for configs/demo.py and folder.py.

  loss='two_stage' on closed-form targets solved with eps=1e-5 (a smoother
  teacher than the loss's 1e-7 on textured regions), labels at alpha* >= 0.6,
  pixels within 0.2 of a decision left out. Chosen on two synthetic families
  with `benchmarks/demo_sweep.py` (benchmarks/README.md, "Closed-form
  targets"). Object labels are vetted by 5x5-window check mattes
  (data.targets.check_radius=2), and from half of training on the labels
  the network gives under 0.1 are left out (label_drop_prob); issue 30,
  textures at 5000 steps over 3 seeds, network only: 0.695 -> 0.736 -> 0.744
  (CE 0.787); the demo: 0.922 -> 0.923 -> 0.931 without the test-time flip.
  Evaluation and prediction use a moving average of the weights
  (ema_decay=0.999, for any loss of these configs): on the textures it
  raised the default on every seed and left CE level, 0.961x -> 0.969x CE
  network only over 3 seeds (benchmarks/README.md, "Weight averaging").
  Returns config, changed in place.
  """
  config.loss = 'two_stage'
  config.data.targets.enabled = True
  config.data.targets.eps = 1e-5
  config.data.targets.check_radius = 2
  config.label_drop_prob = 0.1
  config.label_drop_after = 0.5
  config.target_threshold = 0.6
  config.target_margin = 0.2
  config.ema_decay = 0.999
  return config


def complete(partial, defaults):
  """`defaults` overridden by the fields of `partial` (a ConfigDict or dict).

  Nested dicts are completed recursively; a field that `defaults` lacks is
  kept as given (the schema check reports it where configs are validated).

  Args:
    partial: the given fields, possibly a complete config already.
    defaults: e.g. `get_data_config()`.

  Returns:
    an unlocked ConfigDict with every field of `defaults`.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  out = ml_collections.ConfigDict(defaults.to_dict())
  items = partial.items() if hasattr(partial, 'items') else ()
  for key, value in items:
    if key in out and isinstance(out[key], ml_collections.ConfigDict) and (
        hasattr(value, 'items')):
      out[key] = complete(value, out[key])
    else:
      with out.ignore_type():
        out[key] = value
  return out


def pair(size):
  """(height, width) from a size given as an int or a (height, width) pair."""
  if isinstance(size, (tuple, list)):
    return int(size[0]), int(size[1])
  return int(size), int(size)


def load_config_file(path: str, overrides=()):
  """`get_config()` of a config file given by path (e.g. a variant's parent).

  Args:
    path: a configs/*.py file; relative paths are taken from the current
      directory.
    overrides: 'KEY=VALUE' items set on it (`parse_overrides`,
      `apply_overrides`: ValueError naming a bad one).
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  name = '_cfcls_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  if overrides:
    apply_overrides(config, parse_overrides(overrides))
  return config


def parse_overrides(items) -> dict:
  """['target_margin=0.35', 'model.name=erfnet'] -> {key: value}.

  Values are Python literals where they parse as one (0.35, (1.0, 2.0),
  True), else the text itself (erfnet). ValueError for an item without '='.
  """
  import ast  # pylint: disable=g-import-not-at-top
  out = {}
  for item in items or ():
    key, sep, text = item.partition('=')
    if not sep or not key:
      raise ValueError(f'{item!r}: give KEY=VALUE, e.g. target_margin=0.35')
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out


def apply_overrides(config, overrides: dict):
  """Sets {dotted key: value} on config in place and returns it.

  ValueError naming the key when config has no such field (a typo is not
  added as a new one) or the value has the wrong type.
  """
  for key, value in overrides.items():
    node, parts = config, key.split('.')
    for i, part in enumerate(parts):
      if not hasattr(node, 'keys'):
        raise ValueError(f'{key}: {".".join(parts[:i])} is a value, not a '
                         'group of fields')
      if part not in node:
        raise ValueError(f'{key}: the config has no field {part!r}')
      if i < len(parts) - 1:
        node = node[part]
    leaf = parts[-1]
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(f'{key}={value!r}: {e}') from None
  return config
