"Adversarial erasing: per-image flow on disk, resume, refusal of changed configs, stopping rule, bad input, CLI."
import json, os, subprocess, sys, numpy as np, pytest, torch
from pathlib import Path
from aepsl.data import SyntheticWSSS
from aepsl.models import small_cnn
from aepsl.runs import StageConfigError
from aepsl.erasing import AdversarialErasing, HideAndSeek, load_regions, aepsl_erase

SMALL = dict(epochs=2, bs=16, crop_size=48, patience=None, max_steps=2, rho=0.01)
def tiny(C): return small_cnn(C, widths=(8, 16, 16, 16, 16, 32))
erase = aepsl_erase.__wrapped__          # the CLI's function, called directly

@pytest.fixture(scope='module')
def data(): return SyntheticWSSS(40, size=48, seed=0), SyntheticWSSS(16, size=48, seed=1)

def make_ae(data, out, make_model=tiny, **kw):
    trn, hold = data
    return AdversarialErasing(trn, hold, out, make_model=make_model, model_name='tiny', device='cpu', **{**SMALL, **kw})

def all_regions(ae, split='train'):
    ds = ae.train_ds if split == 'train' else ae.holdout_ds
    return np.stack([ae.mined_steps(i, split, steps=range(1, len(ae.steps) + 1)) for i in range(len(ds.ids))])

def test_resume_after_interrupted_step2_matches_uninterrupted(data, tmp_path):
    full = make_ae(data, tmp_path / 'full'); full.run()
    calls = []
    def crash_on_step2(C):
        calls.append(C)
        if len(calls) == 2: raise KeyboardInterrupt('power cut during step 2')
        return tiny(C)
    with pytest.raises(KeyboardInterrupt): make_ae(data, tmp_path / 'cut', crash_on_step2).run()
    assert (tmp_path / 'cut' / 'mined' / 'step1' / 'done.json').is_file()
    assert not (tmp_path / 'cut' / 'mined' / 'step2' / 'done.json').exists()
    resumed = make_ae(data, tmp_path / 'cut'); steps = resumed.run()
    assert steps[0]['resumed'] and not steps[1]['resumed']
    np.testing.assert_array_equal(all_regions(resumed), all_regions(full))
    np.testing.assert_array_equal(all_regions(resumed, 'holdout'), all_regions(full, 'holdout'))
    assert (all_regions(full) == 2).any()            # step 2 mined something, so the comparison has teeth

def test_rerun_reads_everything_back(data, tmp_path):
    a = make_ae(data, tmp_path / 'r'); a.run()
    b = make_ae(data, tmp_path / 'r', make_model=lambda C: pytest.fail('should not train')); steps = b.run()
    assert all(s['resumed'] for s in steps)
    np.testing.assert_array_equal(all_regions(a), all_regions(b))

def test_regions_are_per_image_files_at_image_size(data, tmp_path):
    ae = make_ae(data, tmp_path / 'r', max_steps=1); ae.run()
    trn = data[0]
    files = sorted((tmp_path / 'r' / 'mined' / 'step1' / 'train').glob('*.npz'))
    assert [f.stem for f in files] == sorted(trn.ids)
    r = load_regions(files[0], 5, (48, 48), trn.labels[trn.ids.index(files[0].stem)])
    assert r.shape == (5, 48, 48)

def test_changed_config_refuses_naming_keys(data, tmp_path):
    make_ae(data, tmp_path / 'r', max_steps=1).run()
    with pytest.raises(StageConfigError, match=r'delta: 0\.5 -> 0\.4'): make_ae(data, tmp_path / 'r', max_steps=1, delta=0.4).run()
    other = (SyntheticWSSS(40, size=48, seed=7), data[1])          # other images under the same folder
    with pytest.raises(StageConfigError, match='data.ids_labels'): make_ae(other, tmp_path / 'r', max_steps=1).run()
    more = (SyntheticWSSS(48, size=48, seed=0), data[1])
    with pytest.raises(StageConfigError, match=r'data.n: 40 -> 48'): make_ae(more, tmp_path / 'r', max_steps=1).run()

def test_stops_when_classification_fails(data, tmp_path):
    "Step 2's classifier is crippled (frozen, zero weights: chance-level mAP), so the relative rule must stop there."
    calls = []
    def make(C):
        calls.append(C); m = tiny(C)
        if len(calls) >= 2:
            m.features.requires_grad_(False); m.classifier.weight.data.zero_(); m.classifier.weight.requires_grad_(False)
        return m
    ae = make_ae(data, tmp_path / 'r', make, max_steps=2)
    ae.run()
    m1, m2 = (s['holdout_mAP'] for s in ae.steps)
    assert m2 < m1
    steps = ae.run(max_steps=3, rho=(1 + m2 / m1) / 2)           # resumed: same classifiers, stricter rule
    assert [s['success'] for s in steps] == [True, False] and ae.n_used == 1
    assert all_regions(ae).max() <= 2 and ae.label_map(0).max() <= 5
    assert len(calls) == 2                                        # stopped before a third classifier was trained

def test_first_step_below_floor_is_an_error(data, tmp_path):
    with pytest.raises(RuntimeError, match='min_map'): make_ae(data, tmp_path / 'r', max_steps=1, min_map=1.01).run()

class Relabel:
    "A data set with other labels."
    def __init__(self, ds, labels): self.ds, self.labels = ds, labels
    def __getattr__(self, k): return getattr(self.ds, k)

def test_bad_settings_and_sets_refused_before_training(data, tmp_path):
    trn, hold = data
    never = lambda C: pytest.fail('nothing may train')
    with pytest.raises(ValueError, match=r'delta=1.0 must lie in \(0, 1\)'): make_ae(data, tmp_path / 'a', never, delta=1.0)
    with pytest.raises(ValueError, match='epochs=0'): make_ae(data, tmp_path / 'a', never, epochs=0)
    with pytest.raises(ValueError, match='shares 16 images'): make_ae((trn, SyntheticWSSS(16, size=48, seed=0)), tmp_path / 'a', never)
    empty = Relabel(hold, np.zeros_like(hold.labels))
    with pytest.raises(ValueError, match='no positive labels'): make_ae((trn, empty), tmp_path / 'a', never)
    bad = Relabel(trn, np.where(trn.labels > 0, 2, 0).astype(np.float32))
    with pytest.raises(ValueError, match='must be 0/1'): make_ae((bad, hold), tmp_path / 'a', never)
    assert not (tmp_path / 'a' / 'cls').exists()

def test_damaged_run_files_are_named(data, tmp_path):
    ae = make_ae(data, tmp_path / 'r', max_steps=1); ae.run()
    f = next((tmp_path / 'r' / 'mined' / 'step1' / 'train').glob('*.npz'))
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(ValueError, match=f.name): make_ae(data, tmp_path / 'r', max_steps=2).run()
    (tmp_path / 'r' / 'mined' / 'step1' / 'done.json').write_text('{"stage": ')
    with pytest.raises(ValueError, match='done.json'): make_ae(data, tmp_path / 'r', max_steps=1).run()

def test_hide_and_seek_hides_about_p():
    ds = [(torch.ones(3, 96, 96), torch.ones(1))] * 200
    h = HideAndSeek(ds, grid_sizes=(1/8,), p=0.5, seed=0)
    frac = np.mean([(h[i][0] == 0).float().mean().item() for i in range(200)])
    assert 0.45 < frac < 0.55

CLI = ['--n_train', '24', '--n_holdout', '12', '--size', '48', '--epochs', '1', '--max_steps', '2', '--rho', '0.01',
       '--crop_size', '48', '--device', 'cpu']

def test_cli_exits_0_writes_run_folder_and_resumes(tmp_path):
    from aepsl.viz import load_label_png
    out = tmp_path / 'run'
    r = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ('config.json', 'log.txt', 'metrics.json', 'figures/steps.png', 'cls/step2/model.pt', 'mined/step2/done.json'):
        assert (out / f).is_file(), f
    text = (out / 'metrics.json').read_text()
    m = json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} is not JSON'))
    assert [s['step'] for s in m['steps']] == [1, 2] and 'mIoU' in m['steps'][0]
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 24
    assert load_label_png(next((out / 'pseudo_objects').glob('*.png'))).shape == (48, 48)
    r2 = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI, capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr[-2000:]
    again = json.loads((out / 'metrics.json').read_text())
    assert all(s['resumed'] for s in again['steps'])
    assert [dict(s, resumed=True) for s in m['steps']] == again['steps']
    r3 = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI + ['--seed', '3'], capture_output=True, text=True)
    assert r3.returncode != 0 and 'seed: 0 -> 3' in r3.stderr and 'new run folder' in r3.stderr

def test_cli_refuses_bad_flags_before_work(tmp_path):
    with pytest.raises(ValueError, match='delta'): erase(out=str(tmp_path / 'x'), delta=1.0, n_train=8, n_holdout=4, size=48)
    with pytest.raises(ValueError, match='epochs'): erase(out=str(tmp_path / 'x'), epochs=0, n_train=8, n_holdout=4, size=48)
    assert not (tmp_path / 'x').exists()

def test_cli_on_mixed_size_voc_folder(tmp_path):
    "Images of several sizes and formats, no --size: every pseudo-object PNG has its image's size."
    from aepsl.data import synthetic_voc, VOCWSSS
    from aepsl.viz import load_label_png
    synthetic_voc(tmp_path / 'voc', n_train=16, n_val=8, size=64, sizes=[(64, 64), (48, 80), (72, 56)], formats=('jpg', 'png'))
    with pytest.raises(ValueError, match='training split'):
        erase(out=str(tmp_path / 'bad'), data=str(tmp_path / 'voc'), holdout_split='train')
    out = tmp_path / 'run'
    erase(out=str(out), data=str(tmp_path / 'voc'), epochs=1, max_steps=1, crop_size=48, device='cpu')
    ds = VOCWSSS(tmp_path / 'voc', 'train')
    shapes = {ds.image(i).shape[:2] for i in range(len(ds))}
    assert len(shapes) > 1
    for i in range(len(ds)):
        assert load_label_png(out / 'pseudo_objects' / f'{ds.ids[i]}.png').shape == ds.image(i).shape[:2]
    assert json.loads((out / 'config.json').read_text())['n_train'] == 16

def test_voc_preset_vgg16_smoke_on_cpu(tmp_path):
    "The paper's preset and network end to end on CPU: tiny crops, one epoch, random weights (no download)."
    from aepsl.data import synthetic_voc
    synthetic_voc(tmp_path / 'voc', n_train=6, n_val=4, size=48)
    out = tmp_path / 'run'
    erase(out=str(out), data=str(tmp_path / 'voc'), config='voc', arch='vgg16_largefov', weights='none', epochs=1,
          max_steps=1, crop_size=32, bs=3, num_workers=0, device='cpu')
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg['arch'] == 'vgg16_largefov' and cfg['crop_size'] == 32 and cfg['preset'] == 'voc'
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 6

def test_pseudo_objects_mark_pixels_claimed_by_several_classes(data, tmp_path):
    "pseudo_objects/<id>.png: 255 exactly where two classes' regions (of any used step) overlap, else the earliest class."
    from aepsl.viz import load_label_png
    ae = make_ae(data, tmp_path / 'r', delta=0.05)      # a low δ: large regions, which overlap in two-class images
    ae.run()
    st = ae.write_pseudo_objects()
    n_conflict = 0
    for i, k in enumerate(ae.train_ds.ids):
        s = ae.mined_steps(i)
        several = (s > 0).sum(0) > 1
        png = load_label_png(st.file(k))
        np.testing.assert_array_equal(png == 255, several)
        big = np.where(s == 0, 99, s).astype(int)
        first = np.where((s > 0).any(0), big.argmin(0) + 1, 0)      # earliest step, then the lower class
        np.testing.assert_array_equal(png[~several], first[~several])
        n_conflict += several.sum()
    assert n_conflict > 0                                # the case is exercised
    assert st.config['conflict'] == 255                  # recorded: a run made before this rule refuses to mix
