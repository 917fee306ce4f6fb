"Saliency: background quality target, forest storage without pickle, external folders, the resumable stage."
import numpy as np, pytest
from PIL import Image
from aepsl.data import SyntheticWSSS
from aepsl.saliency import (unsupervised_saliency, BackgroundSweep, BG_THRESHOLD, SaliencyForest, predict_trees,
                            SaliencyFolder, save_saliency_png, read_saliency_png, saliency_stage, region_features,
                            pixel_features, fh_levels, lab_scores, FEATURE_NAMES)

@pytest.fixture(scope='module')
def ds(): return SyntheticWSSS(40, seed=1)

def test_background_precision_recall(ds):
    "The unsupervised background (saliency < BG_THRESHOLD) meets precision ≥ 95 % at recall ≥ 90 %."
    sw = BackgroundSweep([BG_THRESHOLD])
    for k in range(len(ds)): sw.update(unsupervised_saliency(ds.image(k)), ds.mask(k))
    p, r = sw.at(BG_THRESHOLD)
    assert p >= 0.95 and r >= 0.90, (p, r)

def test_any_size_and_dtype():
    img = SyntheticWSSS(1, sizes=[(60, 90)], seed=2).image(0)
    s = unsupervised_saliency(img)
    assert s.shape == (60, 90) and s.dtype == np.float32 and 0 <= s.min() and s.max() <= 1
    np.testing.assert_allclose(unsupervised_saliency(img / 255.), s, atol=1e-6)   # float image in [0, 1]

def test_lab_scores_match_table(ds):
    img = ds.image(3)
    pf, seg = pixel_features(img), fh_levels(img)[0]
    X = region_features(seg, pf)
    bd, con = lab_scores(seg, pf['lab'])
    np.testing.assert_allclose(bd, X[:, FEATURE_NAMES.index('bd_lab')], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(con, X[:, FEATURE_NAMES.index('con_lab')], rtol=1e-4, atol=1e-3)

def test_forest_roundtrip_without_pickle(ds, tmp_path):
    f = SaliencyForest(n_estimators=5, max_depth=6).fit((ds.image(k), ds.mask(k)) for k in range(6))
    X = f.table(ds.image(7))[0][1]
    np.testing.assert_allclose(predict_trees(f.trees, X), f.sklearn_forest.predict(X), atol=1e-12)
    path = f.save(tmp_path / 'forest.npz')
    with np.load(path, allow_pickle=False) as z: assert all(z[k].dtype != object for k in z.files)
    g = SaliencyForest.load(path)
    np.testing.assert_array_equal(g(ds.image(7)), f(ds.image(7)))

def test_forest_load_refuses_other_files(tmp_path):
    np.savez(tmp_path / 'x.npz', a=np.zeros(3))
    with pytest.raises(ValueError, match='not a SaliencyForest'): SaliencyForest.load(tmp_path / 'x.npz')
    (tmp_path / 'broken.npz').write_bytes(b'PK\x03\x04 not really')
    with pytest.raises(ValueError, match='broken.npz'): SaliencyForest.load(tmp_path / 'broken.npz')

def test_external_folder_checks(ds, tmp_path):
    small = SyntheticWSSS(4, seed=3)
    for k, i in enumerate(small.ids): save_saliency_png(np.full((96, 96), k / 4), tmp_path / f'{i}.png')
    sf = SaliencyFolder(tmp_path, small)
    np.testing.assert_allclose(sf(2), np.full((96, 96), 0.5), atol=1 / 255)
    (tmp_path / f'{small.ids[0]}.png').unlink(); (tmp_path / f'{small.ids[3]}.png').unlink()
    with pytest.raises(FileNotFoundError, match=f'2 of 4 .*{small.ids[0]}, {small.ids[3]}'): SaliencyFolder(tmp_path, small)
    Image.fromarray(np.zeros((96, 95), np.uint8)).save(tmp_path / f'{small.ids[0]}.png')
    Image.fromarray(np.zeros((96, 96), np.uint8)).convert('P').save(tmp_path / f'{small.ids[3]}.png')
    with pytest.raises(ValueError, match=r'95×96, image 96×96.*mode P'): SaliencyFolder(tmp_path, small)
    with pytest.raises(ValueError, match='palette PNG is a label map'): read_saliency_png(tmp_path / f'{small.ids[3]}.png')

def test_16bit_maps(tmp_path):
    a = (np.linspace(0, 1, 100).reshape(10, 10) * 65535).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / 'x.png')
    np.testing.assert_allclose(read_saliency_png(tmp_path / 'x.png'), a / 65535, atol=1e-6)

def test_stage_resume_and_refuse(tmp_path):
    small = SyntheticWSSS(3, seed=4)
    st = saliency_stage(small, tmp_path / 'sal', progress=False)
    assert st.done and sorted(p.name for p in st.folder.glob('*.png')) == sorted(f'{i}.png' for i in small.ids)
    st.marker.unlink(); st.file(small.ids[0]).unlink()
    assert saliency_stage(small, tmp_path / 'sal', progress=False).record['n_computed'] == 1
    with pytest.raises(ValueError, match='bd_quantile'): saliency_stage(small, tmp_path / 'sal', progress=False, bd_quantile=0.5)
    with pytest.raises(ValueError, match='unknown saliency method'): saliency_stage(small, tmp_path / 'x', method='drfi')
