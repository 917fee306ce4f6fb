"Pseudo labels: the rules on hand-made cases, quality bookkeeping, the stage's input checks and resume."
import numpy as np, pytest
from aepsl.data import SyntheticWSSS
from aepsl.pseudo import pseudo_label, pseudo_label_oh, PseudoQuality, pseudo_stage
from aepsl.saliency import saliency_stage
from aepsl.viz import save_label_png, load_label_png

def test_rule_ae_every_case():
    o = np.array([[0, 0, 3, 3, 255]], np.uint8)
    s = np.array([[0.0, 0.8, 0.8, 0.1, 0.0]])
    # bg; unassigned; object; object vs background; claimed by several classes (255 in an object map): in doubt
    np.testing.assert_array_equal(pseudo_label(o, s, 0.3), [[0, 255, 3, 255, 255]])

def test_rule_ae_torch_and_stack():
    import torch
    st = np.zeros((2, 2, 2), bool); st[0, 0] = True; st[1, :, 1] = True
    out = pseudo_label(torch.from_numpy(st), torch.full((2, 2), 0.9), 0.3)
    np.testing.assert_array_equal(out, [[1, 255], [255, 2]])

def test_rule_ae_bad_input():
    with pytest.raises(ValueError, match='saliency is'): pseudo_label(np.zeros((2, 2), np.uint8), np.zeros((2, 3)))
    with pytest.raises(ValueError, match='NaN'): pseudo_label(np.zeros((2, 2), np.uint8), np.full((2, 2), np.nan))
    with pytest.raises(TypeError, match='boolean'): pseudo_label(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2)))

def test_rule_oh_empty_labels_and_no_seed():
    sal = np.zeros((20, 20)); sal[5:15, 5:15] = 1
    # an image with no class (all CAMs zero): salient component without seed -> 255, rest background
    out = pseudo_label_oh(np.zeros((3, 20, 20)), sal)
    assert (out[5:15, 5:15] == 255).all() and (out[:5] == 0).all()

def test_quality_perfect_and_empty():
    gt = np.array([[0, 1, 2, 255]], np.uint8)
    q = PseudoQuality(2).update(gt, gt)
    assert q.summary() == dict(precision=100.0, recall=100.0, coverage=100.0, miou=100.0)
    e = PseudoQuality(2).update(np.full((1, 4), 255, np.uint8), gt)
    assert e.coverage == 0 and e.recall == 0

def test_stage_end_to_end(tmp_path):
    ds = SyntheticWSSS(6, seed=7)
    sal = saliency_stage(ds, tmp_path / 'sal', progress=False)
    for k, i in enumerate(ds.ids):        # perfect mined objects: the ground truth's classes
        m = ds.mask(k); save_label_png(np.where(m == 255, 0, m), tmp_path / 'obj' / f'{i}.png')
    st = pseudo_stage(ds, tmp_path / 'pseudo', sal.folder, objects=tmp_path / 'obj', progress=False)
    q = st.record['quality']
    assert q['precision'] > 95 and 50 < q['coverage'] < 100
    y = load_label_png(st.file(ds.ids[0]))
    assert y.shape == (96, 96) and set(np.unique(y)) <= {0, 255} | set(range(1, 6))
    st.marker.unlink(); st.file(ds.ids[2]).unlink()
    st2 = pseudo_stage(ds, tmp_path / 'pseudo', sal.folder, objects=tmp_path / 'obj', progress=False)
    assert st2.record['n_computed'] == 1 and st2.record['quality'] == q
    with pytest.raises(ValueError, match='bg_threshold'):
        pseudo_stage(ds, tmp_path / 'pseudo', sal.folder, objects=tmp_path / 'obj', bg_threshold=0.5, progress=False)

def test_stage_checks_inputs_first(tmp_path):
    ds = SyntheticWSSS(3, seed=8)
    sal = saliency_stage(ds, tmp_path / 'sal', progress=False)
    for k, i in enumerate(ds.ids): save_label_png(np.zeros((96, 96), np.uint8), tmp_path / 'obj' / f'{i}.png')
    (tmp_path / 'obj' / f'{ds.ids[2]}.png').unlink()
    with pytest.raises(FileNotFoundError, match=ds.ids[2]):
        pseudo_stage(ds, tmp_path / 'p', sal.folder, objects=tmp_path / 'obj', progress=False)
    assert not list((tmp_path / 'p').glob('*.png'))       # nothing written
    save_label_png(np.zeros((50, 96), np.uint8), tmp_path / 'obj' / f'{ds.ids[2]}.png')
    with pytest.raises(ValueError, match='96×50'):
        pseudo_stage(ds, tmp_path / 'p', sal.folder, objects=tmp_path / 'obj', progress=False)
    with pytest.raises(ValueError, match="unknown pseudo-label rule"): pseudo_stage(ds, tmp_path / 'q', sal.folder, rule='sec')
