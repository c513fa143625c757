"""Metrics against hand-computed confusion matrices and numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from cfcls.matting import guided_filter
from cfcls import metrics
from cfcls import objectives


def test_confusion_matrix_by_hand():
  labels = np.array([[0, 0, 1, 1],
                     [2, 2, 255, 1]])
  preds = np.array([[0, 1, 1, 1],
                    [2, 0, 2, 2]])
  valid = np.array([[1, 1, 1, 1],
                    [1, 1, 1, 0]], np.float32)
  got = np.asarray(metrics.confusion_matrix(jnp.asarray(labels),
                                            jnp.asarray(preds), 3,
                                            weights=jnp.asarray(valid)))
  # Counted pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0); the void
  # pixel and the invalid one are left out.
  want = np.array([[1, 1, 0],
                   [0, 2, 0],
                   [1, 0, 1]])
  np.testing.assert_array_equal(got, want)


def test_segmentation_metrics_by_hand():
  confusion = np.array([[1, 1, 0],
                        [0, 2, 0],
                        [1, 0, 1]])
  m = metrics.segmentation_metrics(confusion)
  # IoU: class 0: 1/(2+2-1)=1/3; class 1: 2/(2+3-2)=2/3; class 2: 1/(2+1-1)=1/2
  np.testing.assert_allclose(m['iou'], [1 / 3, 2 / 3, 1 / 2])
  np.testing.assert_allclose(m['miou'], (1 / 3 + 2 / 3 + 1 / 2) / 3)
  np.testing.assert_allclose(m['precision'], [1 / 2, 2 / 3, 1.0])
  np.testing.assert_allclose(m['recall'], [1 / 2, 1.0, 1 / 2])
  mp = (1 / 2 + 2 / 3 + 1) / 3
  mr = (1 / 2 + 1 + 1 / 2) / 3
  np.testing.assert_allclose(m['f1'], 2 * mp * mr / (mp + mr))
  np.testing.assert_allclose(m['pixel_accuracy'], 4 / 6)
  assert m['num_pixels'] == 6


def test_absent_class_left_out_of_means():
  # Class 2 never occurs and is never predicted: NaN IoU, not 0.
  confusion = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
  m = metrics.segmentation_metrics(confusion)
  assert np.isnan(m['iou'][2])
  np.testing.assert_allclose(m['miou'], (3 / 4 + 4 / 5) / 2)


def test_confusion_sums_over_batches_equal_whole():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=(6, 5, 7))
  labels[rng.random(labels.shape) < 0.1] = 255
  preds = rng.integers(0, 4, size=labels.shape)
  whole = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 4)
  parts = sum(metrics.confusion_matrix(jnp.asarray(labels[i:i + 2]),
                                       jnp.asarray(preds[i:i + 2]), 4)
              for i in range(0, 6, 2))
  np.testing.assert_array_equal(whole, parts)
  # Independent count with numpy.
  keep = labels != 255
  want = np.zeros((4, 4), int)
  np.add.at(want, (labels[keep], preds[keep]), 1)
  np.testing.assert_array_equal(whole, want)


def test_matting_errors():
  rng = np.random.default_rng(1)
  a = rng.random((12, 10, 2))
  b = rng.random((12, 10, 2))
  e = metrics.matting_errors(a, b, sigma=1.4)
  np.testing.assert_allclose(e['mse'], np.mean((a - b) ** 2))
  np.testing.assert_allclose(e['mad'], np.mean(np.abs(a - b)))
  # Gradient magnitude from separable Gaussian derivatives, by hand.
  def grad_mag(x):
    gy = scipy.ndimage.gaussian_filter1d(
        scipy.ndimage.gaussian_filter1d(x, 1.4, axis=1, order=0), 1.4, axis=0,
        order=1)
    gx = scipy.ndimage.gaussian_filter1d(
        scipy.ndimage.gaussian_filter1d(x, 1.4, axis=0, order=0), 1.4, axis=1,
        order=1)
    return np.sqrt(gx ** 2 + gy ** 2)
  ge = np.mean([np.sum((grad_mag(a[..., c]) - grad_mag(b[..., c])) ** 2)
                for c in range(2)])
  np.testing.assert_allclose(e['gradient_error'], ge, rtol=1e-10)
  # A linear ramp has a constant gradient magnitude away from the borders.
  ramp = np.tile(np.arange(20.0), (20, 1))
  np.testing.assert_allclose(
      metrics.gaussian_gradient_magnitude(ramp, 1.0)[8:12, 8:12], 1.0,
      rtol=1e-3)  # The kernel is truncated at 4 sigma.
  zero = metrics.matting_errors(a, a)
  assert zero == {'mse': 0.0, 'mad': 0.0, 'gradient_error': 0.0}


def test_inference_labels_and_gate():
  # Two foreground mattes for a 1x1x3 image; MLC rejects class 2.
  outputs = jnp.array([[[[0.3, 0.9], [0.7, 0.2], [1.4, -0.5]]]])
  mlc_logits = jnp.array([[2.0, -2.0]])
  scores, probs = objectives.get('cfm').class_scores(outputs, mlc_logits)
  np.testing.assert_allclose(scores[0, 0, :, 1], 0.0)
  np.testing.assert_allclose(scores[0, 0, :, 0], [0.3, 0.7, 1.0], rtol=1e-6)
  np.testing.assert_allclose(probs, 1 / (1 + np.exp([[-2.0, 2.0]])), rtol=1e-6)
  labels = objectives.get('cfm').labels(outputs, scores,
                                    thresholds=(0.5, 0.8))
  np.testing.assert_array_equal(labels[:, 0, 0], [[0, 1, 1], [0, 0, 1]])
  ungated, _ = objectives.get('cfm').class_scores(outputs, mlc_logits,
                                      mlc_gate=False)
  np.testing.assert_array_equal(
      objectives.labels_from_scores(ungated, 0.5)[0, 0], [2, 1, 1])


def test_inference_softmax_argmax():
  logits = jnp.array([[[[2.0, 1.0, 0.0], [0.0, 0.1, 0.2]]]])
  scores, _ = objectives.get('ce').class_scores(logits, jnp.zeros((1, 2)))
  labels = objectives.get('ce').labels(logits, scores,
                                    thresholds=(0.4, 0.7))
  np.testing.assert_array_equal(labels[:, 0, 0], [[0, 2], [0, 2]])
  with pytest.raises(ValueError, match='unknown loss'):
    objectives.get('cmf')


def test_refine_outputs_with_the_guided_filter():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(2, 12, 10, 3)), jnp.float32)
  mattes = jnp.asarray(rng.normal(size=(2, 12, 10, 3)), jnp.float32)
  logits = jnp.asarray(rng.normal(size=(2, 12, 10, 4)) * 3, jnp.float32)
  # Radius 0: unchanged (the paper's inference).
  assert objectives.get('cfm').refine(mattes, images,
                                  radius=0) is mattes
  # Mattes: the filter itself.
  np.testing.assert_allclose(
      objectives.get('cfm').refine(mattes, images, radius=2,
                               eps=1e-2),
      guided_filter.guided_filter(images, mattes, 2, 1e-2), rtol=1e-6)
  # Softmax networks: the filtered probabilities, which still sum to 1, come
  # back as logits, so class_scores and the argmax see them.
  probs = jax.nn.softmax(logits, axis=-1)
  filtered = np.asarray(guided_filter.guided_filter(images, probs, 2, 1e-2))
  np.testing.assert_allclose(filtered.sum(-1), 1.0, atol=1e-5)
  refined = objectives.get('ce').refine(logits, images, radius=2,
                                     eps=1e-2)
  scores, _ = objectives.get('ce').class_scores(refined, jnp.zeros((2, 3)))
  # (The filter can overshoot below 0 at edges: those are floored at 1e-6
  # and the rest renormalised.)
  floored = np.maximum(filtered, 1e-6)
  np.testing.assert_allclose(
      scores, (floored / floored.sum(-1, keepdims=True))[..., 1:], atol=1e-5)
  labels = objectives.get('ce').labels(refined, scores,
                                    thresholds=(0.5,))
  np.testing.assert_array_equal(labels[0], np.argmax(filtered, -1))
  assert not np.array_equal(labels[0], np.argmax(np.asarray(logits), -1))
