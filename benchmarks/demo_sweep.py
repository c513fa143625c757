"""Quality sweep of demo recipes, without tensorflow (runs on the GPU machine).

Trains variants of configs/demo.py (config overrides, see VARIANTS) on the
synthetic scenes and prints the validation mIoU of each, at several
thresholds, with and without the MLC presence gate, plus the MLC head's
accuracy. The input is a numpy re-implementation of the training pipeline
(random scale, crop, flip; presence from the crop's annotation), so the
numbers are close to, not the same as, `python train.py`'s: use it to rank
recipes, then confirm the chosen one with train.py. Evaluation goes through
`inference.forward`, so it applies configs/demo.py's guided filter
(radius 8) unless a variant sets `guided_filter_radius` to 0; the tables in
benchmarks/README.md were measured before the demo had the filter. Width and
steps are configs/demo.py's for the network (its per_network table; --set
model.width=W and --steps=N win); each result records the width and the
parameter count that ran.

  python benchmarks/demo_sweep.py --variants=cfm,pce,ce --steps=1500
  python benchmarks/demo_sweep.py --variants=all --parallel=8   # on a GPU
  python benchmarks/demo_sweep.py --variants=ce,pce --set model.name=erfnet

Each variant runs in its own process (`--parallel` at once; on one GPU each
gets 1/parallel of its memory). Results: one JSON line per variant on stdout
and in --out.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> config overrides on top of configs/demo.py ('a.b' = nested field).
VARIANTS = {
    'ce': {'loss': 'ce'},
    'pce': {'loss': 'pce'},
    'cfm': {},
    'cfm_all': {'cfm_classes': 'all'},
    'cfm_energy': {'cfm_norm': 'energy'},
    'cfm_energy_all': {'cfm_norm': 'energy', 'cfm_classes': 'all'},
    'cfm_energy_all_lam10': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                             'lam': 10.0},
    'cfm_mlcdec': {'model.mlc_features': 'decoder'},
    'cfm_energy_mlcdec': {'cfm_norm': 'energy',
                          'model.mlc_features': 'decoder'},
    'cfm_lam1_all': {'cfm_classes': 'all', 'lam': 1.0},
    'cfm_energy_all_lr1e3': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                             'learning_rate': 1e-3},
    'cfm_energy_all_3k': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                          'num_train_steps': 3000},
    'cfm_energy_all_mlcdec': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                              'model.mlc_features': 'decoder'},
    'cfm_energy_3k': {'cfm_norm': 'energy', 'num_train_steps': 3000},
    'ce_4k': {'loss': 'ce', 'num_train_steps': 4000},
    'pce_4k': {'loss': 'pce', 'num_train_steps': 4000},
    'cfm_4k': {'num_train_steps': 4000},
    'cfm_energy_4k': {'cfm_norm': 'energy', 'num_train_steps': 4000},
    'cfm_energy_all_4k': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                          'num_train_steps': 4000},
    'cfm_energy_lam10': {'cfm_norm': 'energy', 'lam': 10.0},
    'cfm_energy_lam1000': {'cfm_norm': 'energy', 'lam': 1000.0},
    'cfm_energy_w05': {'cfm_norm': 'energy', 'model.width': 0.5},
    'cfm_energy_all_w05': {'cfm_norm': 'energy', 'cfm_classes': 'all',
                           'model.width': 0.5},
    # Session 3: levers on top of configs/demo.py (energy, all, no gate).
    'ce_os8': {'loss': 'ce', 'model.output_stride': 8},
    'pce_os8': {'loss': 'pce', 'model.output_stride': 8},
    'cfm_os8': {'model.output_stride': 8},
    'cfm_beta01': {'beta': 0.1},
    'cfm_beta0': {'beta': 0.0},
    'cfm_lr1e2': {'learning_rate': 1e-2},
    'cfm_scale05': {'data.scale_range': (0.5, 1.0)},
    'cfm_crop128': {'data.crop_size': 128},
    'cfm_bs16': {'batch_size': 16},
    'cfm_low64': {'model.low_level_channels': 64},
    'cfm_eps1e5': {'laplacian_eps': 1e-5},
    'cfm_lam30': {'lam': 30.0},
    'cfm_s1015': {'data.scale_range': (1.0, 1.5)},
    'ce_s1015': {'loss': 'ce', 'data.scale_range': (1.0, 1.5)},
    'cfm_s11': {'data.scale_range': (1.0, 1.0)},
    'cfm_s0912': {'data.scale_range': (0.9, 1.2)},
    # Issue 15: closed-form targets (alpha* of each training image, cached).
    'paper': {'cfm_norm': 'residual', 'cfm_classes': 'scribbles',
              'mlc_gate': True, 'threshold': 0.5},
    'energy': {'cfm_norm': 'energy'},
    'target': {'cfm_norm': 'target'},
    'target_e01': {'cfm_norm': 'target', 'cfm_energy_weight': 0.1},
    'target_e1': {'cfm_norm': 'target', 'cfm_energy_weight': 1.0},
    'target_t05': {'cfm_norm': 'target', 'threshold': 0.5},
    'two_stage': {'loss': 'two_stage'},
    'two_stage_m2': {'loss': 'two_stage', 'target_margin': 0.2},
    'two_stage_m1': {'loss': 'two_stage', 'target_margin': 0.1},
    'two_stage_t6': {'loss': 'two_stage', 'target_threshold': 0.6},
    # Targets solved with eps=1e-5 (pass a --data npz of their own: the cache
    # is per family, not per target setting).
    'two_stage_e5_t6_m2': {'loss': 'two_stage', 'data.targets.eps': 1e-5,
                           'target_threshold': 0.6, 'target_margin': 0.2},
    'two_stage_e5_t7_m2': {'loss': 'two_stage', 'data.targets.eps': 1e-5,
                           'target_threshold': 0.7, 'target_margin': 0.2},
    'cfm_soft': {'loss': 'cfm_soft'},
    # Issue 30: the matting-Laplacian regulariser on configs/demo.py's
    # default (two_stage on sure closed-form labels) and on pCE.
    'default': {'loss': 'two_stage'},
    'default_lap03': {'loss': 'two_stage', 'laplacian_weight': 0.3},
    'default_lap1': {'loss': 'two_stage', 'laplacian_weight': 1.0},
    'default_lap3': {'loss': 'two_stage', 'laplacian_weight': 3.0},
    'default_lap10': {'loss': 'two_stage', 'laplacian_weight': 10.0},
    'default_lap1_e4': {'loss': 'two_stage', 'laplacian_weight': 1.0,
                        'laplacian_reg_eps': 1e-4},
    'default_lap1_e3': {'loss': 'two_stage', 'laplacian_weight': 1.0,
                        'laplacian_reg_eps': 1e-3},
    'default_refresh': {'loss': 'two_stage'},  # REFRESHED
    'pce_lap1': {'loss': 'pce', 'laplacian_weight': 1.0},
    'pce_lap10': {'loss': 'pce', 'laplacian_weight': 10.0},
}
# Variants trained twice: the second time on the refreshed teacher.
REFRESHED = ('default_refresh',)
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
# --family: the generator module of the data (cfcls.data.<module>).
FAMILIES = {'scenes': 'synthetic', 'textures': 'synthetic_textures'}


def family_module(family):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module('cfcls.data.' + FAMILIES[family])


def variant_overrides(name, sets):
  """{dotted key: value} of a variant and the --set items on top of it.

  A variant without a loss is a CFM recipe: configs/demo.py's own loss is
  'two_stage' since issue 15, so it is named here.
  """
  from cfcls import config_schema  # pylint: disable=g-import-not-at-top
  return {'loss': 'cfm', **VARIANTS[name],
          **config_schema.parse_overrides(sets)}


def make_config(name, steps, sets=None):
  from cfcls import config_schema  # pylint: disable=g-import-not-at-top
  config = config_schema.load_config_file(os.path.join(ROOT, 'configs',
                                                       'demo.py'))
  config_schema.apply_overrides(config, variant_overrides(name, sets))
  if steps:
    config.num_train_steps = steps
  # configs/demo.py's width (and steps) of model.name for what is still
  # unset, as train.py does (an explicit --set or --steps wins).
  config_schema.apply_per_network(config)
  from cfcls import objectives  # pylint: disable=g-import-not-at-top
  config.data.targets.enabled = objectives.needs_targets(config)
  return config


COMBINE = {'min': np.min, 'max': np.max}


def add_teacher_flags(parser):
  """--extra_radius and --combine (make_data, demo_closed_form.py)."""
  parser.add_argument('--extra_radius', type=int, default=0,
                      help='targets: the mattes with the config\'s windows '
                      'and with windows of this radius, combined by '
                      '--combine (demo_sweep.py: only when --data is made, '
                      'so give it its own --data)')
  parser.add_argument('--combine', default='min', choices=tuple(COMBINE))


def combined_mattes(solve, radius, extra_radius=0, combine='min'):
  """solve(r) (mattes with radius-r windows) clipped to [0, 1]; with
  extra_radius R > 0, the pixelwise `combine` of the radius and R mattes."""
  radii = (radius,) + ((extra_radius,) if extra_radius else ())
  return COMBINE[combine]([np.clip(solve(r), 0, 1) for r in radii], axis=0)


def make_data(config, path, family='scenes', extra_radius=0, combine='min'):
  """Renders the train/validation scenes into an npz (once), with the
  closed-form targets of the training images (uint8, as cached for train.py).

  extra_radius R > 0: each target combines the mattes with the config's
  windows and with radius-R windows (clipped first), pixelwise: combine
  'min' keeps a class only as far as both window sizes agree, 'max' as far
  as either reaches (benchmarks/README.md, "A better teacher is not a
  better network").
  """
  from cfcls.data import targets  # pylint: disable=g-import-not-at-top
  gen = family_module(family)
  syn = config.data.synthetic
  out = {}
  for split, num in (('train', syn.num_train), ('validation', syn.num_val)):
    exs = [gen.generate_example(syn.seed, split, i, syn.image_size)
           for i in range(num)]
    for key in ('image', 'mask', 'scribbles'):
      out[f'{split}_{key}'] = np.stack([e[key] for e in exs])
  tc = config.data.targets

  def teacher(image, scribbles):
    if targets.check_radius(tc) > 0:  # the product's mattes and check mattes
      if extra_radius:
        raise ValueError('--extra_radius and data.targets.check_radius are '
                         'two teachers: give one')
      return targets.solve_targets(image, scribbles, gen.NUM_CLASSES, tc.lam,
                                   tc.eps, tc.radius, targets.check_radius(tc))
    return combined_mattes(
        lambda r: targets.solve_image(image, scribbles, gen.NUM_CLASSES,
                                      tc.lam, tc.eps, r),
        tc.radius, extra_radius, combine)

  out['train_targets'] = np.stack([np.rint(teacher(e, s) * targets.QUANT)
                                   .astype(np.uint8) for e, s in zip(
                                       out['train_image'],
                                       out['train_scribbles'])])
  np.savez(path, **out)


def crop_example(rng, image, scribbles, mask, crop, scale_range, num_classes,
                 target):
  """Random scale / crop / flip of one example (numpy, nearest for labels).

  target: uint8 [H, W, K-1] closed-form mattes, bilinear like the image.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  s = rng.uniform(*scale_range)
  h, w = image.shape[:2]
  sh, sw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
  image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
  target = np.stack([cv2.resize(target[..., c], (sw, sh),
                                interpolation=cv2.INTER_LINEAR)
                     for c in range(target.shape[-1])], -1)
  out_tgt = np.zeros((crop, crop, target.shape[-1]), np.float32)
  scribbles = cv2.resize(scribbles, (sw, sh), interpolation=cv2.INTER_NEAREST)
  mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
  out_img = np.zeros((crop, crop, 3), np.uint8)
  out_scr = np.full((crop, crop), 255, np.uint8)
  out_mask = np.full((crop, crop), 255, np.uint8)
  valid = np.zeros((crop, crop), np.float32)
  y0 = rng.integers(0, max(sh - crop, 0) + 1)
  x0 = rng.integers(0, max(sw - crop, 0) + 1)
  oy = rng.integers(0, max(crop - sh, 0) + 1)
  ox = rng.integers(0, max(crop - sw, 0) + 1)
  ch, cw = min(crop, sh), min(crop, sw)
  src = (slice(y0, y0 + ch), slice(x0, x0 + cw))
  dst = (slice(oy, oy + ch), slice(ox, ox + cw))
  out_img[dst], out_scr[dst], out_mask[dst] = image[src], scribbles[src], mask[src]
  out_tgt[dst] = target[src] / 255.0
  valid[dst] = 1
  if rng.random() < 0.5:
    out_img, out_scr = out_img[:, ::-1], out_scr[:, ::-1]
    out_mask, valid = out_mask[:, ::-1], valid[:, ::-1]
    out_tgt = out_tgt[:, ::-1]
  present = np.zeros(num_classes - 1, np.float32)
  ids = np.unique(out_scr)
  ids = ids[(ids > 0) & (ids < num_classes)]
  present[ids - 1] = 1
  return (out_img, out_scr.astype(np.int32), out_mask.astype(np.int32), valid,
          present, out_tgt)


def train(config, run, mesh, state, data, k, on_eval=None, eval_every=0):
  """config.num_train_steps steps on numpy crops of data's training images;
  on_eval(step, state) after every eval_every steps (0: never)."""
  import jax  # pylint: disable=g-import-not-at-top
  from cfcls import parallel  # pylint: disable=g-import-not-at-top
  from cfcls.data import targets  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(config.seed)
  n_train = data['train_image'].shape[0]
  history = []
  for step in range(config.num_train_steps):
    idx = rng.integers(0, n_train, config.batch_size)
    parts = [crop_example(rng, data['train_image'][i], data['train_scribbles'][i],
                          data['train_mask'][i], config.data.crop_size,
                          tuple(config.data.scale_range), k,
                          data['train_targets'][i]) for i in idx]
    batch = {key: np.stack([p[j] for p in parts]) for j, key in enumerate(
        ('image', 'scribbles', 'mask', 'valid', 'presence', 'targets'))}
    batch['targets'], check = targets.split_checks(batch['targets'], k)
    if check is not None:
      batch['check_targets'] = check
    state, m = run.train_step(state, parallel.host_batch_to_global(batch, mesh))
    if (step + 1) % 100 == 0:
      history.append({kk: float(v) for kk, v in jax.device_get(m).items()})
    if on_eval is not None and eval_every and (step + 1) % eval_every == 0:
      on_eval(step + 1, state)
  jax.block_until_ready(state)
  return state, history


def refresh_targets(config, run, state, data, k):
  """Replaces data['train_targets'] by the closed-form mattes of each
  training image's scribbles joined by the network's confident pixels
  (cfcls.matting.refine.refreshed_scribbles); returns the teacher's mIoU on
  the training masks before and after (labels as the two_stage loss takes
  them, unsure pixels left out of the count)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from cfcls import inference  # pylint: disable=g-import-not-at-top
  from cfcls import losses  # pylint: disable=g-import-not-at-top
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from cfcls.data import targets  # pylint: disable=g-import-not-at-top
  from cfcls.matting import refine  # pylint: disable=g-import-not-at-top
  fwd = jitted_forward(with_guided_filter(config, 0), run)
  variables = state.variables()
  images, scribbles = data['train_image'], data['train_scribbles']
  tc = config.data.targets
  new, before, after = [], 0, 0
  for start, scores in scores_in_batches(fwd, variables, images):
    for i in range(scores.shape[0]):
      j = start + i
      seeds = refine.refreshed_scribbles(
          scribbles[j], inference.class_confidences(config, scores[i]),
          config.refine_threshold, config.refine_erode)
      alpha = targets.solve_image(images[j], seeds, k, tc.lam, tc.eps,
                                  tc.radius)
      new.append(np.rint(np.clip(alpha, 0, 1) * targets.QUANT).astype(
          np.uint8))
      mask = data['train_mask'][j].astype(np.int32)
      for old_new, tgt in ((0, data['train_targets'][j]), (1, new[-1])):
        labels = np.asarray(losses.closed_form_labels(
            jnp.asarray(tgt[None] / targets.QUANT), jnp.asarray(
                scribbles[j][None].astype(np.int32)), jnp.ones((1,) + mask.shape),
            config.target_threshold, config.target_margin))[0]
        keep = labels != 255
        conf = np.asarray(metrics_lib.confusion_matrix(
            np.where(keep, mask, 255), np.where(keep, labels, 0), k))
        if old_new:
          after = after + conf
        else:
          before = before + conf
  data['train_targets'] = np.stack(new)
  return {'teacher_sure_miou_before': round(
      metrics_lib.segmentation_metrics(before)['miou'], 4),
          'teacher_sure_miou_after': round(
              metrics_lib.segmentation_metrics(after)['miou'], 4)}


def dump_probabilities(config, run, state, data, k, path):
  """Saves the network's class probabilities, without ('net') and with
  ('gf') the config's guided filter, float16, on the validation images and
  the first REFINE_TRAIN_IMAGES training images, for
  benchmarks/refine_sweep.py to compare refinements without training."""
  from cfcls import inference  # pylint: disable=g-import-not-at-top
  variables = state.variables()
  out = {}
  for name, radius in (('net', 0), ('gf', config.guided_filter_radius)):
    fwd = jitted_forward(with_guided_filter(config, radius), run)
    for split, count in (('train', REFINE_TRAIN_IMAGES), ('validation', None)):
      images = data[f'{split}_image'][:count]
      probs = []
      for _, scores in scores_in_batches(fwd, variables, images):
        probs.extend(inference.class_confidences(config, s) for s in scores)
      out[f'{split}_{name}'] = np.stack(probs).astype(np.float16)
  np.savez_compressed(path, **out)


def scores_in_batches(fwd, variables, images, size=20):
  """(start, numpy scores [B, H, W, K-1]) of images[start:start + size]."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  for start in range(0, images.shape[0], size):
    yield start, np.asarray(jax.device_get(fwd(
        variables, jnp.asarray(images[start:start + size])))['scores'])


def jitted_forward(config, run):
  """jit of inference.forward for this config (a copy with_guided_filter
  gives another radius)."""
  import jax  # pylint: disable=g-import-not-at-top
  from cfcls import inference  # pylint: disable=g-import-not-at-top

  def fwd(variables, images):
    return inference.forward(config, run.eval_model, variables, images)
  return jax.jit(fwd)


def with_guided_filter(config, radius):
  """A copy of config with guided_filter_radius = radius (inference.forward
  reads the radius when jax traces it, so a closure over a config changed
  afterwards would see the later value)."""
  import copy  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.guided_filter_radius = radius
  return config


# name -> (tta_scales, tta_flip) evaluated with --tta_grid.
TTA_GRID = {'flip': ((1.0,), True), 'ms': ((0.75, 1.0, 1.25), False),
            'ms_flip': ((0.75, 1.0, 1.25), True)}


def run_variant(name, steps, data_path, family='scenes', sets=None, dump='',
                refine_grid=True, eval_every=0, tta_grid=False):
  """Trains one variant; returns its result dict."""
  import jax  # pylint: disable=g-import-not-at-top
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from cfcls import objectives  # pylint: disable=g-import-not-at-top
  from cfcls import parallel
  from cfcls.data import targets  # pylint: disable=g-import-not-at-top
  from cfcls.training import run_lib  # pylint: disable=g-import-not-at-top
  config = make_config(name, steps, sets)
  synthetic = family_module(family)
  k = synthetic.NUM_CLASSES
  data = np.load(data_path)
  mesh = parallel.create_mesh(jax.devices()[:1])
  run = run_lib.build(config, k, synthetic.CLASS_NAMES, mesh)
  state = run_lib.initial_state(run)
  params = {key: sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(tree))
            for key, tree in state.params.items()}
  data = dict(data)
  want = targets.channels(k, config.data.targets)
  if ('train_targets' in data and objectives.needs_targets(config)
      and data['train_targets'].shape[-1] != want):
    raise ValueError(
        f'{data_path}: its targets have {data["train_targets"].shape[-1]} '
        f'channels, data.targets.check_radius='
        f'{targets.check_radius(config.data.targets)} needs {want}: give '
        'this setting its own --data')
  curve = []
  # Network only (compiled once for every point of the curve): validation
  # mIoU and per-class IoU of the argmax (matte networks: config.threshold,
  # no gate) at this step.
  curve_config = with_guided_filter(config, 0)
  curve_fwd = jitted_forward(curve_config, run)
  curve_key = ('argmax' if not objectives.get(config.loss).matte
               else f'nogate_{config.threshold}')

  def on_eval(step, state):
    conf, _ = validation_confusions(curve_config, curve_fwd,
                                    state.variables(), data, k)
    per_class = metrics_lib.segmentation_metrics(conf[curve_key])['iou']
    curve.append({'step': step, 'miou': round(float(np.nanmean(per_class)), 4),
                  'iou': [round(float(x), 3) for x in per_class]})

  t0 = time.time()
  state, history = train(config, run, mesh, state, data, k, on_eval,
                         eval_every)
  refreshed = {}
  if name in REFRESHED:
    # The refreshed teacher: the first network's confident pixels join the
    # scribbles; the targets are solved again and a new network is trained.
    refreshed = refresh_targets(config, run, state, data, k)
    state = run_lib.initial_state(run)
    state, history = train(config, run, mesh, state, data, k)
  train_s = time.time() - t0
  if dump:
    os.makedirs(dump, exist_ok=True)
    dump_probabilities(config, run, state, data, k, os.path.join(
        dump, f'{family}_{name}_s{config.seed}.npz'))

  # Evaluation on the full validation images: scores without the gate, then
  # labels with and without it on the host; the config's test-time
  # augmentation ('' keys), then each of TTA_GRID's ('<name>_' keys).
  config.mlc_gate = False
  radius = config.guided_filter_radius
  settings = {'': (config.tta_scales, config.tta_flip)}
  if tta_grid:
    settings.update({f'{name}_': tta for name, tta in TTA_GRID.items()})
  # With config.ema_decay the moving average is evaluated, and the last
  # step's weights too ('raw_' keys).
  weights = {'': state.variables()}
  if state.ema is not None:
    weights['raw_'] = state.trained_variables()
  miou = {}
  for source, variables in weights.items():
    for prefix, (scales, flip) in settings.items():
      for gf in sorted({0, radius}):
        evaluated = with_guided_filter(config, gf)
        evaluated.tta_scales, evaluated.tta_flip = scales, flip
        for key, value in evaluate(evaluated, run, variables, data,
                                   k).items():
          miou[f'{source}{prefix}gf{gf}_{key}'] = value
  if refine_grid and not objectives.get(config.loss).matte:
    config.guided_filter_radius = 0
    miou.update(evaluate_matting_refine(config, run, state, data, k))
  refine_s = miou.pop('matting_s_per_image', None)
  mlc = {key: miou.pop(key) for key in list(miou) if 'mlc' in key}
  return {'variant': name, 'family': family,
          'overrides': variant_overrides(name, sets),
          'model': config.model.name, 'width': config.model.width,
          'params': sum(params.values()),
          'params_without_mlc_head': sum(
              v for key, v in params.items() if key != 'mlc_head'),
          'steps': config.num_train_steps, 'train_s': round(train_s, 1),
          'device': jax.devices()[0].device_kind, 'miou': miou,
          'best': max(((kk, v) for kk, v in miou.items()
                       if not kk.startswith('train_')), key=lambda kv: kv[1]),
          'mlc': mlc,
          'matting_refine_s_per_image': refine_s, 'refreshed': refreshed,
          'last_train': history[-1] if history else {},
          'curve': curve,
          'loss_every_100': [round(h['loss'], 4) for h in history]}


# (threshold, erode, guided, eps) of the matting refinement, compared on a part
# of the training split (full images and masks) and on validation.
REFINE_GRID = ((0.9, 2, 0, 1e-5), (0.8, 4, 0, 1e-5), (0.8, 4, 0, 1e-4),
               (0.8, 4, 0, 1e-3), (0.7, 4, 0, 1e-4), (0.8, 2, 0, 1e-4),
               (0.9, 2, 8, 1e-5))
REFINE_TRAIN_IMAGES = 60


def evaluate_matting_refine(config, run, state, data, k):
  """mIoU of the network's labels refined by the matting system
  (cfcls.matting.refine) for each REFINE_GRID setting: seeds at confidence
  >= threshold, eroded by `erode` px, from the network outputs or their
  guided filter (radius `guided`); on the first REFINE_TRAIN_IMAGES training
  images ('train_' keys) and on validation, with the solve time per image.
  """
  from cfcls import inference  # pylint: disable=g-import-not-at-top
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from cfcls.matting import refine  # pylint: disable=g-import-not-at-top
  variables = state.variables()
  out, seconds = {}, []
  for gf in sorted({g for _, _, g, _ in REFINE_GRID}):
    fwd = jitted_forward(with_guided_filter(config, gf), run)
    for split, count in (('train', REFINE_TRAIN_IMAGES), ('validation', None)):
      images = data[f'{split}_image'][:count]
      masks = data[f'{split}_mask'][:count]
      conf = {}
      for start, scores in scores_in_batches(fwd, variables, images):
        for i in range(scores.shape[0]):
          probs = inference.class_confidences(config, scores[i])
          conf[f'argmax_gf{gf}'] = conf.get(f'argmax_gf{gf}', 0) + np.asarray(
              metrics_lib.confusion_matrix(masks[start + i].astype(np.int32),
                                           np.argmax(probs, -1), k))
          for thr, erode, g, eps in REFINE_GRID:
            if g != gf:
              continue
            labels, _, info = refine.refine_image(images[start + i], probs,
                                                  thr, erode, eps=eps)
            seconds.append(info['seconds'])
            key = f'{thr:g}_{erode}_gf{g}_eps{eps:g}'
            conf[key] = conf.get(key, 0) + np.asarray(
                metrics_lib.confusion_matrix(
                    masks[start + i].astype(np.int32), labels, k))
      prefix = 'train_' if split == 'train' else ''
      for key, c in conf.items():
        out[f'{prefix}{"" if key.startswith("argmax") else "matting_"}{key}'] = round(
            metrics_lib.segmentation_metrics(c)['miou'], 4)
  out['matting_s_per_image'] = round(float(np.mean(seconds)), 3)
  return out


def validation_confusions(config, fwd, variables, data, k):
  """Confusion matrices of each labelling of fwd's outputs on the
  validation images ('argmax' for softmax networks, '<gate|nogate>_<t>'
  for matte networks), and the MLC head's accuracy."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from cfcls import objectives  # pylint: disable=g-import-not-at-top
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  images, masks = data['validation_image'], data['validation_mask']
  scrib = data['validation_scribbles']
  conf = {}
  mlc_correct = mlc_total = 0
  for start in range(0, images.shape[0], 20):
    out = jax.device_get(fwd(variables, jnp.asarray(images[start:start + 20])))
    scores, probs = out['scores'], out['probs']
    gt = masks[start:start + 20].astype(np.int32)
    present = np.stack([np.isin(np.arange(1, k), np.unique(s)) for s in
                        scrib[start:start + 20]])
    mlc_correct += int(np.sum((probs >= 0.5) == present))
    mlc_total += present.size
    if objectives.get(config.loss).matte:
      gated = scores * (probs >= 0.5)[:, None, None, :]
      cases = {}
      for t in THRESHOLDS:
        for gname, sc in (('gate', gated), ('nogate', scores)):
          cases[f'{gname}_{t}'] = objectives.labels_from_scores(sc, t)
    else:
      cases = {'argmax': out['labels'][0]}
    for key, labels in cases.items():
      conf[key] = conf.get(key, 0) + np.asarray(
          metrics_lib.confusion_matrix(gt, labels, k))
  return conf, mlc_correct / max(mlc_total, 1)


def evaluate(config, run, variables, data, k):
  """mIoU per labelling on the validation images (config's guided filter)."""
  from cfcls import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  conf, mlc_accuracy = validation_confusions(
      config, jitted_forward(config, run), variables, data, k)
  miou = {key: round(metrics_lib.segmentation_metrics(c)['miou'], 4)
          for key, c in conf.items()}
  miou['mlc_accuracy'] = round(mlc_accuracy, 3)
  return miou


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variants', default='cfm,pce,ce',
                      help=f'comma-separated, or "all": {", ".join(VARIANTS)}')
  parser.add_argument('--steps', type=int, default=0,
                      help='training steps (0 = the demo config\'s)')
  parser.add_argument('--parallel', type=int, default=1)
  parser.add_argument('--family', default='scenes', choices=list(FAMILIES))
  parser.add_argument('--data', default='',
                      help='npz cache (default /tmp/cfcls_sweep_<family>.npz)')
  parser.add_argument('--out', default='')
  add_teacher_flags(parser)
  parser.add_argument('--set', action='append', default=[],
                      help='KEY=VALUE config override for every variant, '
                      'e.g. --set model.name=erfnet (repeatable)')
  parser.add_argument('--dump', default='',
                      help='folder: save each run\'s class probabilities '
                      '(for benchmarks/refine_sweep.py)')
  parser.add_argument('--no_refine_grid', action='store_true',
                      help='skip the REFINE_GRID evaluation')
  parser.add_argument('--eval_every', type=int, default=0,
                      help='also record the network-only validation mIoU '
                      'and per-class IoU every N steps ("curve")')
  parser.add_argument('--tta_grid', action='store_true',
                      help='also evaluate each TTA_GRID test-time '
                      'augmentation (keys <tta>_gf<r>_...)')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.data = args.data or f'/tmp/cfcls_sweep_{args.family}.npz'
  if args.worker:
    print('RESULT ' + json.dumps(run_variant(
        args.worker, args.steps, args.data, args.family, args.set, args.dump,
        not args.no_refine_grid, args.eval_every, args.tta_grid)),
          flush=True)
    return
  names = list(VARIANTS) if args.variants == 'all' else args.variants.split(',')
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    parser.error(f'unknown variants {unknown}; known: {list(VARIANTS)}')
  if not os.path.exists(args.data):
    t = time.time()
    # The --set values too: a data.targets.* setting changes the targets.
    make_data(make_config(names[0], args.steps, args.set), args.data,
              args.family, args.extra_radius, args.combine)
    print(f'data: {args.data} ({time.time() - t:.1f} s)', flush=True)
  env = dict(os.environ)
  if args.parallel > 1:
    env['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{0.9 / args.parallel:.3f}'

  def launch(name):
    cmd = [sys.executable, os.path.abspath(__file__), f'--worker={name}',
           f'--steps={args.steps}', f'--data={args.data}',
           f'--family={args.family}', f'--dump={args.dump}',
           f'--eval_every={args.eval_every}'] + [
               f'--set={x}' for x in args.set] + (
                   ['--no_refine_grid'] if args.no_refine_grid else []) + (
                       ['--tta_grid'] if args.tta_grid else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          check=False)
    for line in proc.stdout.splitlines():
      if line.startswith('RESULT '):
        return json.loads(line[len('RESULT '):])
    return {'variant': name, 'error': proc.stderr[-2000:]}

  results = []
  with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
    for future in concurrent.futures.as_completed(
        [pool.submit(launch, n) for n in names]):
      results.append(future.result())
      print(json.dumps(results[-1]), flush=True)
      if args.out:  # after each variant: a time limit keeps what finished
        with open(args.out, 'w') as f:
          json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
