"Adversarial erasing: resume after an interruption, stopping rule, bad input."
import json, numpy as np, pytest, torch
from aepsl.data import SyntheticWSSS
from aepsl.models import small_cnn
from aepsl.erasing import AdversarialErasing, erase_regions, HideAndSeek

FIT = dict(epochs=2, bs=16, device='cpu', progress=False)
def tiny(C): return small_cnn(C, widths=(8, 16, 16, 16, 16, 32))

@pytest.fixture(scope='module')
def data():
    return SyntheticWSSS(48, size=48, seed=0), SyntheticWSSS(16, size=48, seed=1)

def make_ae(data, out, make_model=tiny, **kw):
    trn, hold = data
    return AdversarialErasing(trn.images, trn.labels, hold.images, hold.labels, make_model, max_steps=2, min_map=0.0, out=out, **FIT, **kw)

def test_resume_after_interrupted_step2_matches_uninterrupted(data, tmp_path):
    full = make_ae(data, tmp_path / 'full'); full.run()
    calls = []
    def crash_on_step2(C):
        calls.append(C)
        if len(calls) == 2: raise KeyboardInterrupt('power cut during step 2')
        return tiny(C)
    with pytest.raises(KeyboardInterrupt): make_ae(data, tmp_path / 'cut', crash_on_step2).run()
    assert (tmp_path / 'cut' / 'mined' / 'step1' / 'done.json').is_file()
    assert not (tmp_path / 'cut' / 'mined' / 'step2').exists()
    resumed = make_ae(data, tmp_path / 'cut'); steps = resumed.run()
    assert steps[0].get('resumed') and not steps[1].get('resumed')
    np.testing.assert_array_equal(resumed.mined, full.mined)
    assert (full.mined == 2).any()            # step 2 mined something, so the comparison has teeth

def test_rerun_reads_everything_back(data, tmp_path):
    a = make_ae(data, tmp_path / 'r'); a.run()
    b = make_ae(data, tmp_path / 'r', make_model=lambda C: pytest.fail('should not train')); steps = b.run()
    assert all(s.get('resumed') for s in steps)
    np.testing.assert_array_equal(a.mined, b.mined)

def test_stops_when_classification_fails(data, tmp_path):
    trn, hold = data
    ae = AdversarialErasing(trn.images, trn.labels, hold.images, hold.labels, tiny, max_steps=3, min_map=0.0, **FIT)
    ae.run()
    maps = [s['holdout_mAP'] for s in ae.steps]
    thr = (maps[0] + min(maps[1:])) / 2 if min(maps[1:]) < maps[0] else None
    if thr is None: pytest.skip('held-out mAP did not drop in this tiny run')
    ae.run(min_map=thr)
    assert ae.steps[-1]['success'] is False and ae.n_used == len(ae.steps) - 1
    assert ae.mined.max() == ae.n_used        # the failed step's regions are not used

def test_first_step_failure_is_an_error(data):
    trn, hold = data
    ae = AdversarialErasing(trn.images, trn.labels, hold.images, hold.labels, tiny, max_steps=1, min_map=1.01, **FIT)
    with pytest.raises(RuntimeError, match='min_map'): ae.run()

def test_bad_input(data):
    trn, hold = data
    with pytest.raises(ValueError, match='label vectors'):
        AdversarialErasing(trn.images, trn.labels[:3], hold.images, hold.labels, tiny)
    with pytest.raises(ValueError, match="unknown fill 'grey'"):
        erase_regions(trn.images[:2], np.ones((2, 48, 48), bool), fill='grey')

def test_mean_fill_is_zero_after_normalisation(data):
    trn, _ = data
    ae = AdversarialErasing(trn.images, trn.labels, trn.images[:4], trn.labels[:4], tiny, **FIT)
    ae.mined[:, 0, :10, :10] = 1
    x = ae._ds(ae.erased(2), ae.labels)[0][0]
    assert x[:, :10, :10].abs().max() < 0.02 and x[:, 20:, 20:].abs().max() > 0.1

def test_hide_and_seek_hides_about_p():
    ds = [(torch.ones(3, 96, 96), torch.ones(1))] * 200
    h = HideAndSeek(ds, grid_sizes=(1/8,), p=0.5, seed=0)
    frac = np.mean([(h[i][0] == 0).float().mean().item() for i in range(200)])
    assert 0.45 < frac < 0.55
