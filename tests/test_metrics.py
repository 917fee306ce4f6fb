"Cross-checks of `aepsl.metrics` against torchmetrics, scikit-learn and direct set counting."
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, confusion_matrix as sk_confusion_matrix
from torchmetrics.classification import (MulticlassAccuracy, MulticlassJaccardIndex, MulticlassPrecision,
                                         MulticlassRecall)

from aepsl.metrics import (SegMetric, average_precision, confusion_matrix, iou_from_confusion,
                           mean_average_precision, precision_recall_from_confusion)

N_CLASSES = 5


def random_batches(seed, n_batches=4, shape=(3, 17, 23), n_classes=N_CLASSES, absent=None, p_ignore=0.1):
    "Label maps with ignore pixels, and predictions that agree with them about 60% of the time."
    g = torch.Generator().manual_seed(seed)
    classes = torch.tensor([c for c in range(n_classes) if c != absent])
    out = []
    for _ in range(n_batches):
        target = classes[torch.randint(len(classes), shape, generator=g)]
        noise = classes[torch.randint(len(classes), shape, generator=g)]
        pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, noise)
        target = torch.where(torch.rand(shape, generator=g) < p_ignore, torch.full_like(target, 255), target)
        out.append((pred, target))
    return out


def torchmetrics_scores(batches, n_classes=N_CLASSES):
    ms = dict(iou=MulticlassJaccardIndex(n_classes, average=None, ignore_index=255),
              precision=MulticlassPrecision(n_classes, average=None, ignore_index=255),
              recall=MulticlassRecall(n_classes, average=None, ignore_index=255),
              acc=MulticlassAccuracy(n_classes, average='micro', ignore_index=255))
    for pred, target in batches:
        for m in ms.values(): m.update(pred, target)
    return {k: m.compute().double() for k, m in ms.items()}


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_segmetric_matches_torchmetrics(seed):
    batches = random_batches(seed)
    m = SegMetric(N_CLASSES)
    for pred, target in batches: m.update(pred, target)
    ref = torchmetrics_scores(batches)
    assert not m.iou.isnan().any()
    torch.testing.assert_close(m.iou, ref['iou'], rtol=0, atol=1e-6)
    torch.testing.assert_close(m.precision, ref['precision'], rtol=0, atol=1e-6)
    torch.testing.assert_close(m.recall, ref['recall'], rtol=0, atol=1e-6)
    assert m.miou == pytest.approx(ref['iou'].mean().item(), abs=1e-6)
    assert m.pixel_acc == pytest.approx(ref['acc'].item(), abs=1e-6)
    n_labelled = sum(int((t != 255).sum()) for _, t in batches)
    assert m.n_pixels == n_labelled


def test_iou_matches_direct_set_counting():
    "IoU as |pred∩target| / |pred∪target| over labelled pixels, counted without any confusion matrix."
    batches = random_batches(7, n_batches=2)
    m = SegMetric(N_CLASSES)
    for pred, target in batches: m.update(pred.numpy().astype(np.uint8), target.numpy().astype(np.uint8))
    p = np.concatenate([b[0].numpy().ravel() for b in batches])
    t = np.concatenate([b[1].numpy().ravel() for b in batches])
    valid = t != 255
    for c in range(N_CLASSES):
        inter = ((p == c) & (t == c) & valid).sum()
        union = (((p == c) | (t == c)) & valid).sum()
        assert m.iou[c].item() == pytest.approx(inter / union)


def test_absent_class_is_nan_and_skipped():
    batches = random_batches(3, absent=2)
    m = SegMetric(N_CLASSES, class_names=list('abcde'))
    for pred, target in batches: m.update(pred, target)
    ref = torchmetrics_scores(batches)
    present = [0, 1, 3, 4]
    assert m.iou.isnan().tolist() == [False, False, True, False, False]
    torch.testing.assert_close(m.iou[present], ref['iou'][present], rtol=0, atol=1e-6)
    assert m.miou == pytest.approx(ref['iou'][present].mean().item(), abs=1e-6)
    s = m.summary()
    assert s['iou']['c'] is None and s['precision']['c'] is None and s['recall']['c'] is None
    assert s['iou']['d'] == pytest.approx(ref['iou'][3].item(), abs=1e-6)
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert 'c' in repr(m) and 'mIoU' in repr(m)


def test_predicted_but_never_true_counts_as_zero():
    m = SegMetric(3).update(torch.tensor([0, 0, 2, 1]), torch.tensor([0, 0, 0, 1]))
    assert m.iou.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert m.miou == pytest.approx((2 / 3 + 1 + 0) / 3)
    prec, rec = m.precision, m.recall
    assert prec[2].item() == 0.0 and math.isnan(rec[2].item())


def test_confusion_matrix_matches_sklearn():
    pred, target = random_batches(11, n_batches=1)[0]
    cm = confusion_matrix(pred, target, N_CLASSES)
    valid = target != 255
    ref = sk_confusion_matrix(target[valid].numpy(), pred[valid].numpy(), labels=list(range(N_CLASSES)))
    assert cm.dtype == torch.int64 and cm.shape == (N_CLASSES, N_CLASSES)
    np.testing.assert_array_equal(cm.numpy(), ref)
    # rows are the target: a single pixel of class 1 predicted as 3 lands in row 1, column 3
    one = confusion_matrix(torch.tensor([3]), torch.tensor([1]), N_CLASSES)
    assert one[1, 3] == 1 and one.sum() == 1


def test_helpers_on_hand_computed_matrix():
    cm = torch.tensor([[1, 1], [1, 2]])
    assert iou_from_confusion(cm).tolist() == pytest.approx([1 / 3, 1 / 2])
    p, r = precision_recall_from_confusion(torch.tensor([[4, 1], [2, 3]]))
    assert p.tolist() == pytest.approx([4 / 6, 3 / 4])
    assert r.tolist() == pytest.approx([4 / 5, 3 / 5])


def test_reset_and_ignore_index_option():
    m = SegMetric(2, ignore_index=9)
    m.update(torch.tensor([1, 1, 0]), torch.tensor([1, 9, 0]))
    assert m.n_pixels == 2 and m.pixel_acc == 1.0
    m.reset()
    assert m.n_pixels == 0 and math.isnan(m.miou) and math.isnan(m.pixel_acc)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r'\(2, 3\).*\(3, 2\)'):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='7'):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 2)
    with pytest.raises(ValueError, match='-1'):
        confusion_matrix(np.array([0, 1]), np.array([-1, 1]), 2)
    with pytest.raises(ValueError, match='4'):
        confusion_matrix(torch.tensor([0, 4]), torch.tensor([0, 1]), 2)
    with pytest.raises(TypeError):
        confusion_matrix(torch.rand(2), torch.tensor([0, 1]), 2)
    m = SegMetric(2)
    with pytest.raises(ValueError):
        m.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))
    assert m.n_pixels == 0  # a failed update adds nothing
    # a prediction outside the range is fine where the target is ignored
    assert confusion_matrix(torch.tensor([0, 255]), torch.tensor([0, 255]), 2).sum() == 1


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 40, 6
    targets = (rng.random((n, c)) < 0.3).astype(np.int64)
    targets[:, 4] = 0                                  # no positives: excluded from the mean
    targets[0, 5] = 1
    scores = rng.normal(size=(n, c)) + targets         # informative but imperfect
    scores[:, 1] = np.round(scores[:, 1], 1)           # many ties
    scores[:, 2] = np.round(scores[:, 2])              # many more ties
    ap = average_precision(torch.from_numpy(scores), torch.from_numpy(targets))
    pos = [k for k in range(c) if targets[:, k].any()]
    assert pos == [0, 1, 2, 3, 5]
    for k in pos:
        assert ap[k].item() == pytest.approx(average_precision_score(targets[:, k], scores[:, k]), abs=1e-10)
    assert math.isnan(ap[4].item())
    ref = average_precision_score(targets[:, pos], scores[:, pos], average='macro')
    assert mean_average_precision(scores, targets) == pytest.approx(ref, abs=1e-10)
    assert mean_average_precision(torch.from_numpy(scores).float(), torch.from_numpy(targets)) == pytest.approx(ref, abs=1e-6)


def test_average_precision_extremes_and_errors():
    y = torch.tensor([[1.], [1.], [0.], [0.]])
    assert mean_average_precision(torch.tensor([[4.], [3.], [2.], [1.]]), y) == pytest.approx(1.0)
    # worst ranking: positives at ranks 3 and 4 -> (1/3 + 2/4) / 2
    assert mean_average_precision(torch.tensor([[1.], [2.], [3.], [4.]]), y) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert math.isnan(mean_average_precision(torch.rand(3, 2), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match=r'\(4, 2\).*\(4, 3\)'):
        mean_average_precision(torch.rand(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match='0/1'):
        mean_average_precision(torch.rand(4, 2), torch.full((4, 2), 2.))
