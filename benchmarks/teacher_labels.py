"""What the sure closed-form labels say about the training images' pixels.

For a demo_sweep npz (its training images, masks, scribbles and uint8
targets), the labels `loss='two_stage'` trains on (losses.closed_form_labels
at a threshold and margin) compared with the full masks: how many pixels
get a label, how many of those are right, and per kind of pixel where the
labels go (an object pixel labelled with its class, as background, as
another class, or left out; a background pixel labelled background or as
an object), and per true class where its pixels' labels go.
benchmarks/README.md, "A better teacher is not a better network", reads the
networks trained on such labels against these shares. An npz made with
data.targets.check_radius > 0 holds check mattes too; its object labels are
vetted by them, as training vets them.

  python benchmarks/teacher_labels.py --data=/tmp/cfcls_sweep_textures.npz
  python benchmarks/teacher_labels.py --data=NPZ --threshold=0.7

--oracle=fill|clean --out=NPZ writes a copy of the npz whose targets are an
oracle teacher, to train with demo_sweep.py --data=NPZ: 'fill' gives every
pixel the sure labels leave out its true class (a one-hot target), 'clean'
leaves out every wrong sure label (its targets all set to the threshold,
which the margin leaves out). They split the gap between the teacher and
full masks into missing labels and wrong ones.

--vet_with=NPZ2 --out=NPZ writes a copy whose object labels are kept only
where NPZ2's sure labels agree (e.g. NPZ2 = the min-of-3x3-and-5x5 teacher,
demo_sweep.py --extra_radius=2 --combine=min): the rest are left out the
same way. No masks are read: it is a teacher, not an oracle.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfcls import labels as labels_lib  # pylint: disable=g-import-not-at-top
from cfcls import losses  # pylint: disable=g-import-not-at-top
from cfcls.data import targets  # pylint: disable=g-import-not-at-top


def num_classes(data) -> int:
  """K of a demo_sweep npz: its masks' largest class id + 1 (the targets may
  hold K-1 mattes, or K-1 mattes and K-1 check mattes)."""
  return int(data['train_mask'].max()) + 1


def sure_labels(data, threshold: float, margin: float, batch: int = 50,
                check=None):
  """Yields (index range, masks, scribbles, the sure labels) per batch;
  check: another npz's data whose targets vet the object labels
  (`losses.closed_form_labels`' check). An npz made with
  data.targets.check_radius > 0 holds its own check mattes, which vet its
  labels as training does."""
  k = num_classes(data)

  def mattes(source, rows):
    return targets.split_checks(
        (source['train_targets'][rows] / targets.QUANT).astype(np.float32), k)

  for i in range(0, len(data['train_mask']), batch):
    rows = slice(i, i + batch)
    mask = data['train_mask'][rows].astype(np.int64)
    scribbles = data['train_scribbles'][rows]
    own, own_check = mattes(data, rows)
    if check is not None:
      if own_check is not None:
        raise ValueError('the npz holds its own check mattes: vet with one '
                         'teacher, not both')
      own_check = mattes(check, rows)[0]
    got = np.asarray(losses.closed_form_labels(
        own, scribbles.astype(np.int32), np.ones(mask.shape, np.float32),
        threshold, margin, own_check))
    yield rows, mask, scribbles, got


def label_counts(data, threshold: float, margin: float) -> np.ndarray:
  """[K, K + 1] pixel counts: row c = the pixels of true class c, by their
  sure label (columns 0..K-1, then left out)."""
  k = num_classes(data)
  counts = np.zeros((k, k + 1), np.int64)
  for _, mask, _, got in sure_labels(data, threshold, margin):
    col = np.where(got == labels_lib.IGNORE, k, got)
    np.add.at(counts, (mask.ravel(), col.ravel()), 1)
  return counts


def class_shares(counts: np.ndarray) -> np.ndarray:
  """`label_counts` as shares of each row (true class)."""
  return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def label_shares(counts: np.ndarray):
  """Shares of pixels by what their sure label says (see the docstring),
  from `label_counts`."""
  labels = counts[:, :-1]  # the labelled pixels, by true class and label
  right = np.diag(labels)
  obj, bg = counts[1:], counts[0]
  objects, background = max(obj.sum(), 1), max(bg.sum(), 1)
  return {'labelled': labels.sum() / counts.sum(),
          'accuracy_of_labelled': right.sum() / max(labels.sum(), 1),
          'object_right': right[1:].sum() / objects,
          'object_as_background': obj[:, 0].sum() / objects,
          'object_as_other': (labels[1:, 1:].sum() - right[1:].sum())
                             / objects,
          'background_right': bg[0] / background,
          'background_as_object': bg[1:-1].sum() / background}


def leave_out(part, where, threshold: float):
  """Sets the uint8 targets of the pixels `where` to the threshold on every
  class: their largest alpha* is then within any margin > 0 of it, so the
  sure labels leave them out."""
  part[where] = np.uint8(round(threshold * targets.QUANT))


def oracle_targets(data, kind: str, threshold: float, margin: float):
  """uint8 targets of the 'fill' or 'clean' oracle teacher (docstring)."""
  out = data['train_targets'].copy()
  k = num_classes(data)
  for rows, mask, scribbles, got in sure_labels(data, threshold, margin):
    part = out[rows]
    if kind == 'fill':  # the check mattes (if any) say the same
      left_out = got == labels_lib.IGNORE
      onehot = np.eye(k, dtype=np.uint8)[mask][..., 1:]
      onehot = np.concatenate([onehot] * (out.shape[-1] // (k - 1)), -1)
      part[left_out] = onehot[left_out] * np.uint8(targets.QUANT)
    else:
      leave_out(part, (got != labels_lib.IGNORE) & (got != mask)
                & (scribbles == labels_lib.IGNORE), threshold)
  return out


def vetted_targets(data, other, threshold: float, margin: float):
  """uint8 targets of data whose object labels other's labels confirm."""
  out = data['train_targets'].copy()
  for (rows, _, _, got), (_, _, _, vetted) in zip(
      sure_labels(data, threshold, margin),
      sure_labels(data, threshold, margin, check=other)):
    leave_out(out[rows], (got != labels_lib.IGNORE)
              & (vetted == labels_lib.IGNORE), threshold)
  return out


# What the label shares and the teachers read from a demo_sweep npz.
LABEL_KEYS = ('train_mask', 'train_scribbles', 'train_targets')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True,
                      help='a benchmarks/demo_sweep.py npz')
  parser.add_argument('--threshold', type=float, default=0.6)
  parser.add_argument('--margin', type=float, default=0.2)
  parser.add_argument('--oracle', choices=('fill', 'clean'), default='',
                      help='write an oracle teacher\'s npz to --out')
  parser.add_argument('--vet_with', default='',
                      help='npz of a second teacher that must confirm the '
                      'object labels; writes --out')
  parser.add_argument('--out', default='',
                      help='npz path for --oracle / --vet_with')
  args = parser.parse_args()
  if args.oracle and args.vet_with:
    parser.error('give --oracle or --vet_with, not both')
  if (args.oracle or args.vet_with) and not args.out:
    parser.error('--oracle and --vet_with need --out=NPZ')
  if not os.path.isfile(args.data):
    parser.error(f'--data {args.data}: no such file (make one with '
                 'benchmarks/demo_sweep.py --data=...)')
  with np.load(args.data) as f:
    if args.oracle or args.vet_with:
      everything = {k: f[k] for k in f.files}
    data = {k: f[k] for k in LABEL_KEYS}
  if args.oracle:
    everything['train_targets'] = oracle_targets(data, args.oracle,
                                                 args.threshold, args.margin)
    what = f'the {args.oracle!r} oracle teacher'
  elif args.vet_with:
    with np.load(args.vet_with) as f:
      other = {k: f[k] for k in LABEL_KEYS}
    if other['train_targets'].shape != data['train_targets'].shape:
      parser.error(f'--vet_with {args.vet_with}: targets '
                   f'{other["train_targets"].shape}, --data has '
                   f'{data["train_targets"].shape}')
    everything['train_targets'] = vetted_targets(data, other, args.threshold,
                                                 args.margin)
    what = f'object labels vetted by {args.vet_with}'
  if args.oracle or args.vet_with:
    np.savez(args.out, **everything)
    data['train_targets'] = everything['train_targets']
    print(f'{args.out}: {what}, of {args.data}')
  counts = label_counts(data, args.threshold, args.margin)
  print(f'{args.out or args.data}: threshold {args.threshold}, margin '
        f'{args.margin}, '
        f'{len(data["train_mask"])} training images')
  for key, value in label_shares(counts).items():
    print(f'  {key:24s} {value:.3f}')
  per_class = class_shares(counts)
  k = len(per_class)
  print('  per true class (rows), share labelled as each class (0 = '
        'background) or left out:')
  print('    class ' + ' '.join(f'{c:>6d}' for c in range(k)) + '  left out')
  for c, row in enumerate(per_class):
    print(f'    {c:5d} ' + ' '.join(f'{v:6.3f}' for v in row))


if __name__ == '__main__':
  main()
