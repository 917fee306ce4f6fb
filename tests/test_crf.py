"DenseCRF wrapper: equals pydensecrf called directly, kernel widths that follow the image size, robust inputs, restriction, batch over processes, resume."
import numpy as np, pytest, torch
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax, unary_from_labels
from aepsl.data import SyntheticWSSS
from aepsl.crf import crf_probs, crf_labels, crf_params, crf_widths, crf_batch, crf_stage, image_label_set, PRESETS
from aepsl.viz import load_label_png

@pytest.fixture(scope='module')
def data():
    ds = SyntheticWSSS(4, seed=2)
    rng = np.random.default_rng(0)
    P = np.ascontiguousarray(rng.dirichlet(np.ones(6) * 0.5, (4, 96, 96)).transpose(0, 3, 1, 2), np.float32)
    return ds, P

def scaled(p, side):
    "A preset's published widths scaled by hand to an image whose long side is `side`."
    return dict(p, gauss_sxy=p['gauss_sxy'] * side / 500, bilateral_sxy=p['bilateral_sxy'] * side / 500)

def direct(img, probs, p):
    C, H, W = probs.shape
    d = dcrf.DenseCRF2D(W, H, C)
    d.setUnaryEnergy(unary_from_softmax(probs))
    d.addPairwiseGaussian(sxy=p['gauss_sxy'], compat=p['gauss_compat'])
    d.addPairwiseBilateral(sxy=p['bilateral_sxy'], srgb=p['bilateral_srgb'], rgbim=img, compat=p['bilateral_compat'])
    return np.array(d.inference(p['n_iter'])).reshape(C, H, W)

@pytest.mark.parametrize('preset', list(PRESETS))
def test_same_as_pydensecrf(data, preset):
    ds, P = data
    img = ds.image(0)
    q = direct(img, P[0], scaled(PRESETS[preset], 96))
    lab, qq = crf_probs(img, P[0], preset, return_probs=True)
    np.testing.assert_array_equal(lab, q.argmax(0))
    np.testing.assert_allclose(qq, q, atol=1e-5)   # our per-pixel renormalisation rounds differently
    # ref_size=None: the published widths as pixels (what the CRF did before the size rule)
    np.testing.assert_allclose(crf_probs(img, P[0], preset, ref_size=None, return_probs=True)[1],
                               direct(img, P[0], PRESETS[preset]), atol=1e-5)

def test_widths_follow_image_size():
    assert crf_widths('deeplab', (375, 500)) == (3, 121)              # a VOC photograph: the published widths
    np.testing.assert_allclose(crf_widths('deeplab', (96, 96)), (0.576, 23.232))
    np.testing.assert_allclose(crf_widths('irn', (80, 128)), (3 * 128 / 500, 50 * 128 / 500))   # the long side
    assert crf_widths('psa', (120, 80)) == crf_widths('psa', (80, 120))
    assert crf_widths(crf_params('sec', scale_factor=12), (41, 41)) == (3 / 12, 80 / 12)   # fixed: any size
    assert crf_widths(crf_params('sec', scale_factor=12), (500, 500)) == (3 / 12, 80 / 12)
    assert crf_widths(crf_params('deeplab', ref_size=None), (96, 96)) == (3, 121)
    assert crf_widths(dict(PRESETS['psa'], ref_size=96), (96, 96)) == (3, 80)
    for kw in ({}, dict(scale_factor=5), dict(ref_size=None)):
        assert crf_params(crf_params('irn', **kw)) == crf_params('irn', **kw)   # workers get params back through crf_params

@pytest.mark.parametrize('H,W', [(375, 500), (64, 128), (120, 80)])
def test_sizes_same_as_pydensecrf(H, W):
    rng = np.random.default_rng(H)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    P = np.ascontiguousarray(rng.dirichlet(np.ones(3), (H, W)).transpose(2, 0, 1), np.float32)
    np.testing.assert_allclose(crf_probs(img, P, 'deeplab', return_probs=True)[1],
                               direct(img, P, scaled(PRESETS['deeplab'], max(H, W))), atol=1e-4)   # renormalisation rounding
    fixed = dict(PRESETS['psa'], gauss_sxy=3 / 5, bilateral_sxy=80 / 5)          # scale_factor overrides the rule
    np.testing.assert_allclose(crf_probs(img, P, 'psa', scale_factor=5, return_probs=True)[1], direct(img, P, fixed), atol=1e-4)

def test_irn_labels_same_as_pydensecrf(data):
    ds, P = data
    img, lm = ds.image(1), P[1].argmax(0).astype(np.uint8)
    d = dcrf.DenseCRF2D(96, 96, 6)
    d.setUnaryEnergy(unary_from_labels(lm, 6, gt_prob=0.7, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3 * 96 / 500, compat=3)
    d.addPairwiseBilateral(sxy=50 * 96 / 500, srgb=5, rgbim=img, compat=10)
    ref = np.array(d.inference(10)).reshape(6, 96, 96).argmax(0)
    np.testing.assert_array_equal(crf_labels(img, lm, 'irn'), ref)

def test_dtypes_layouts_torch(data):
    ds, P = data
    img, ref = ds.image(2), crf_probs(ds.image(2), P[2], 'psa')
    np.testing.assert_array_equal(crf_probs(torch.from_numpy(img.astype(np.float32) / 255), torch.from_numpy(P[2]).double(), 'psa'), ref)
    np.testing.assert_array_equal(crf_probs(np.asfortranarray(img), P[2][:, ::-1, :][:, ::-1, :], 'psa'), ref)

def test_probabilities_not_summing_to_one(data):
    ds, P = data
    img = ds.image(0)
    np.testing.assert_array_equal(crf_probs(img, P[0] * 7.5, 'psa'), crf_probs(img, P[0], 'psa'))   # renormalised
    with pytest.raises(ValueError, match='do not sum to one at'): crf_probs(img, P[0] * 7.5, strict=True)
    z = P[0].copy(); z[:, :10] = 0                                   # all-zero pixels: uniform, no NaN
    assert set(np.unique(crf_probs(img, z))) <= set(range(6))
    with pytest.raises(ValueError, match='non-negative'): crf_probs(img, P[0] - 0.5)
    with pytest.raises(ValueError, match='C×H×W'): crf_probs(img, P[0, 0])

def test_single_class_and_empty_labels(data):
    ds, P = data
    img = ds.image(0)
    np.testing.assert_array_equal(crf_probs(img, P[0], labels=image_label_set(np.zeros(5))), np.zeros((96, 96)))  # no class: all background
    with pytest.raises(ValueError, match='labels is empty'): crf_probs(img, P[0], labels=[])
    np.testing.assert_array_equal(crf_labels(img, np.full((96, 96), 255, np.uint8)), 255)          # nothing labelled
    np.testing.assert_array_equal(crf_probs(img, P[0][:1]), np.zeros((96, 96)))                     # one channel

def test_restriction_only_allowed_labels(data):
    ds, P = data
    out = crf_probs(ds.image(3), P[3], 'deeplab', labels=[0, 4])
    assert set(np.unique(out)) <= {0, 4}

def test_batch_workers_equal_inline_and_resume(data, tmp_path):
    ds, P = data
    jobs = lambda: ((i, ds.image(k), P[k], [0, 1, 2]) for k, i in enumerate(ds.ids))
    crf_batch(jobs(), tmp_path / 'w2', 'psa', workers=2)
    crf_batch(jobs(), tmp_path / 'w0', 'psa', workers=0)
    for i in ds.ids:
        np.testing.assert_array_equal(load_label_png(tmp_path / 'w2' / f'{i}.png'), load_label_png(tmp_path / 'w0' / f'{i}.png'))
    st = crf_stage(ds, lambda k: P[k], tmp_path / 'st', 'psa', workers=2, progress=False)
    assert st.record['n_computed'] == 4
    assert st.record['config']['crf']['ref_size'] == 500   # the size rule is part of the stage's config
    st.marker.unlink(); st.file(ds.ids[1]).unlink()
    assert crf_stage(ds, lambda k: P[k], tmp_path / 'st', 'psa', workers=0, progress=False).record['n_computed'] == 1

def test_label_maps_in_batch(data, tmp_path):
    ds, P = data
    lm = P[0].argmax(0).astype(np.uint8); lm[:20] = 255
    crf_batch([(ds.ids[0], ds.image(0), lm, None)], tmp_path, 'irn', workers=0)
    np.testing.assert_array_equal(load_label_png(tmp_path / f'{ds.ids[0]}.png'), crf_labels(ds.image(0), lm, 'irn'))

def test_bad_params():
    with pytest.raises(ValueError, match='unknown CRF preset'): crf_params('fast')
    with pytest.raises(ValueError, match='n_iter'): crf_params('psa', n_iter=0)
    with pytest.raises(ValueError, match='gt_prob'): crf_params('irn', gt_prob=1.0)
    with pytest.raises(ValueError, match='scale_factor must be a positive number, got -1'): crf_params('psa', scale_factor=-1)
    with pytest.raises(ValueError, match='ref_size must be a positive number of pixels or None, got 0'): crf_params('psa', ref_size=0)
