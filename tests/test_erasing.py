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
    "Step 2's classifier is crippled (features and weights frozen, weights zero: chance-level mAP), so the rule must stop there."
    trn, hold = data
    calls = []
    def make(C):
        calls.append(C); m = tiny(C)
        if len(calls) >= 2:
            m.features.requires_grad_(False); m.classifier.weight.data.zero_(); m.classifier.weight.requires_grad_(False)
        return m
    ae = AdversarialErasing(trn.images, trn.labels, hold.images, hold.labels, make, max_steps=3, min_map=0.0, out=tmp_path / 'r', **FIT)
    ae.run(max_steps=2)
    m1, m2 = (s['holdout_mAP'] for s in ae.steps)
    assert m2 < m1
    steps = ae.run(max_steps=3, min_map=(m1 + m2) / 2)     # resumed: same classifiers, new criterion
    assert [s['success'] for s in steps] == [True, False] and ae.n_used == 1
    assert ae.mined.max() == 1                              # the failed step's regions are not used
    assert len(calls) == 2                                  # the stop came before a third classifier was trained

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

def test_cli_writes_run_folder_and_resumes(tmp_path):
    from aepsl.erasing import main_erase
    from aepsl.viz import load_label_png
    args = ['--out', str(tmp_path / 'run'), '--n-train', '24', '--n-holdout', '12', '--size', '48', '--epochs', '1',
            '--max-steps', '2', '--min-map', '0', '--device', 'cpu']
    out = main_erase(args)
    for f in ('config.json', 'log.txt', 'metrics.json', 'figures/steps.png', 'cls/step2/model.pt', 'mined/step2/done.json'):
        assert (out / f).is_file(), f
    m = json.loads((out / 'metrics.json').read_text())
    assert [s['step'] for s in m['steps']] == [1, 2] and 'mIoU' in m['steps'][0]
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 24
    assert load_label_png(next((out / 'pseudo_objects').glob('*.png'))).shape == (48, 48)
    again = json.loads((main_erase(args) / 'metrics.json').read_text())
    assert all(s['resumed'] for s in again['steps']) and again['steps'] == [dict(s, resumed=True) for s in m['steps']]

def test_cli_on_voc_folder(tmp_path):
    from aepsl.data import synthetic_voc
    from aepsl.erasing import main_erase
    synthetic_voc(tmp_path / 'voc', n_train=16, n_val=8, size=48)
    out = main_erase(['--data', str(tmp_path / 'voc'), '--out', str(tmp_path / 'run'), '--epochs', '1', '--max-steps', '1',
                      '--min-map', '0', '--device', 'cpu'])
    assert json.loads((out / 'config.json').read_text())['n_train'] == 16

def test_load_split_labels_from_full_size_masks(tmp_path):
    "The CLI's loader reads each mask once; its labels equal the reader's, also when images are resized."
    from aepsl.data import synthetic_voc, VOCWSSS
    from aepsl.erasing import _load_split
    synthetic_voc(tmp_path / 'voc', n_train=6, n_val=2, size=48)
    ds = VOCWSSS(tmp_path / 'voc', 'train')
    X, Y, M = _load_split(ds, 24)
    assert X.shape == (6, 24, 24, 3) and M.shape == (6, 24, 24)
    np.testing.assert_array_equal(Y, VOCWSSS(tmp_path / 'voc', 'train').labels)
