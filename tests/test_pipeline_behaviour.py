"""What the tiny end-to-end run must do, not only finish: predict foreground better than all-background, resume a run
killed in the PSL training to the very same weights, score the evaluation split (not the held-out one) when they
differ, and let `test_prohibit` change predictions of the same trained network. Three tiny runs (~25 s each alone on
two cores) shared by the tests."""
import shutil
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
import aepsl.train
from aepsl.voc import synthetic_voc, VOCWSSS
from aepsl.pipeline import Pipeline, evaluate_predictions
from aepsl.psl import MIN_BRANCH_MAP
from aepsl.cli import aepsl_run
from aepsl.runs import read_json
from aepsl.viz import save_label_png

# Settings whose AE-PSL predicts foreground: 80 training images of 64 px (8 held out), seg_epochs=20 give AE-PSL
# 18.3–23.2 mIoU over seeds 0–2 against 11.7 for all-background. With 40 training images (36 once 4 are held out)
# AE-PSL predicted background everywhere for seed 0 at seg_epochs 20–40.
TINY = dict(cls_epochs=3, max_steps=2, seg_epochs=20)
N_TEST = 10

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "Synthetic VOC folder: 80 training (8 of them held out by the pipeline), 16 validation ('val') images of 64 px, and a 'test' split of 10 of the validation ids."
    root = tmp_path_factory.mktemp('voc') / 'data'
    synthetic_voc(root, 80, 16, 64, seed=0)
    sets = root / 'ImageSets' / 'Segmentation'
    (sets / 'test.txt').write_text('\n'.join((sets / 'val.txt').read_text().split()[:N_TEST]) + '\n')
    return root

def run(data, out, stop_after=None, **kw):
    return Pipeline(data, out, 'cpu', device='cpu', progress=False, **TINY, **kw)(stop_after)

@pytest.fixture(scope='module')
def run_x(data, tmp_path_factory):
    "The reference: uninterrupted, evaluated on 'val', with the cpu preset's test-time prohibition ('auto': [1, v] where the branch is trusted)."
    out = tmp_path_factory.mktemp('x') / 'run'
    run(data, out)
    return out

@pytest.fixture(scope='module')
def run_y(data, tmp_path_factory):
    "The same run through `aepsl_run`, Ctrl-C'd after the 7th epoch checkpoint of the PSL training, then the same command again."
    out = tmp_path_factory.mktemp('y') / 'run'
    kw = dict(data=str(data), out=str(out), device='cpu', quiet=True, **TINY)
    real, saves = aepsl.train.save_checkpoint, []
    def save_then_interrupt(path, *a, **k):
        r = real(path, *a, **k)
        if Path(path).parent.name == 'seg' and Path(path).name == 'train.pt':
            saves.append(path)
            if len(saves) == 7: raise KeyboardInterrupt
        return r
    err = StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stderr(err), redirect_stdout(StringIO()):
        mp.setattr(aepsl.train, 'save_checkpoint', save_then_interrupt)
        with pytest.raises(SystemExit) as e: aepsl_run.__wrapped__(**kw)
    assert e.value.code == 130 and 'interrupted during stage seg' in err.getvalue(), err.getvalue()[-2000:]
    assert len(saves) == 7 and not (out / 'seg' / 'model.pt').exists() and not (out / 'pred').exists()
    with pytest.MonkeyPatch.context() as mp, redirect_stderr(StringIO()), redirect_stdout(StringIO()):
        mp.setattr(aepsl.train, 'save_checkpoint', save_then_interrupt)
        aepsl_run.__wrapped__(**kw)
    n = read_json(out / 'seg' / 'done.json')['epochs']   # patience may stop it before the cap of 20
    assert n > 7 and len(saves) == n, (n, len(saves))   # the resumed training took the remaining epochs, not all again
    return out

@pytest.fixture(scope='module')
def run_z(data, run_x, tmp_path_factory):
    "Evaluated on 'test' (not the held-out 'val'), with the other test-time prohibition than run_x's; the masks read by the evaluation stage are recorded."
    out, other = tmp_path_factory.mktemp('z') / 'run', not read_json(run_x / 'pred' / 'done.json')['config']['prohibit']
    run(data, out, 'pred_crf', eval_split='test', test_prohibit=other)
    p = Pipeline(data, out, 'cpu', device='cpu', progress=False, eval_split='test', test_prohibit=other, **TINY)   # checks every mask
    reads, real = [], VOCWSSS.mask
    def spy(self, i, *a, **k):
        reads.append((self.split, self.ids[i]))
        return real(self, i, *a, **k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VOCWSSS, 'mask', spy)
        p()   # every stage done but the evaluation
    return out, reads

def labels(folder): return {f.stem: np.array(Image.open(f)) for f in sorted(Path(folder).glob('*.png'))}
def weights(out): return torch.load(out / 'seg' / 'model.pt', weights_only=True)['model']
def ladder(out): return {r['rung']: r for r in read_json(out / 'metrics.json')['ladder']}

def all_background_miou(data, split, tmp_path):
    ds = VOCWSSS(data, split)
    for i, k in enumerate(ds.ids): Image.fromarray(np.zeros(ds.mask(i).shape, np.uint8)).save(tmp_path / f'{k}.png')
    return evaluate_predictions(tmp_path, ds)['mIoU']

def test_tiny_run_predicts_foreground(data, run_x, tmp_path):
    pred = labels(run_x / 'pred')
    assert len(pred) == 16 and sum(int((p > 0).sum()) for p in pred.values()) > 0, 'AE-PSL predicts background everywhere'
    assert sum((p > 0).any() for p in pred.values()) >= 8   # foreground in at least half of the images
    base = all_background_miou(data, 'val', tmp_path)
    l = ladder(run_x)
    assert l['AE-PSL']['mIoU'] > base + 3, (l['AE-PSL']['mIoU'], base)
    assert l['AE-SSL']['mIoU'] > base + 3 and l['pseudo labels']['mIoU'] > base + 3, (l, base)
    assert l['AE-PSL']['mIoU'] == evaluate_predictions(run_x / 'pred', VOCWSSS(data, 'val'))['mIoU']

def test_killed_in_psl_training_resumes_to_the_same_weights(run_x, run_y):
    assert read_json(run_y / 'metrics.json')['stages']['seg']['resumed']
    a, b = weights(run_x), weights(run_y)
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k
    px, py = labels(run_x / 'pred'), labels(run_y / 'pred')
    assert px.keys() == py.keys() and all(np.array_equal(px[k], py[k]) for k in px)
    assert {k: r['mIoU'] for k, r in ladder(run_x).items()} == {k: r['mIoU'] for k, r in ladder(run_y).items()}

def test_eval_split_other_than_holdout_split_is_what_is_scored(data, run_z):
    out, reads = run_z
    test_ids = (data / 'ImageSets' / 'Segmentation' / 'test.txt').read_text().split()
    l = read_json(out / 'metrics.json')['ladder']
    assert {r['split'] for r in l} == {'test'} and {r['n_images'] for r in l} == {N_TEST}
    assert [r['rung'] for r in l if r['rung'].startswith('AE step')] == ['AE step 1', 'AE step 2']   # mined on 'test' for the ladder
    assert sorted(p.stem for p in (out / 'mined' / 'step1' / 'eval').glob('*.npz')) == sorted(test_ids)
    ev = VOCWSSS(data, 'test')
    for r in l:
        if 'folder' in r:
            assert sorted(labels(out / r['folder'])) == sorted(test_ids), r['rung']
            assert r['mIoU'] == evaluate_predictions(out / r['folder'], ev)['mIoU'], r['rung']
    assert {k for s, k in reads if s == 'test'} == set(test_ids)
    assert not [x for x in reads if x[0] == 'val'], 'the evaluation read masks of the held-out split'

def test_prohibit_changes_predictions_of_the_same_network(data, run_x, run_z):
    out, _ = run_z
    a, b = weights(run_x), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)   # the same trained network (the evaluation split does not feed training)
    assert read_json(run_x / 'config.json')['test']['prohibit'] == 'auto'   # the cpu preset's, decided by the branch's held-out mAP:
    pred = read_json(run_x / 'pred' / 'done.json')['config']   # the network the AE-PSL rungs used, and its branch's held-out mAP
    bm, pro = read_json(run_x / pred['network'] / 'done.json')['branch_mAP'], pred['prohibit']
    assert pro == (bm >= MIN_BRANCH_MAP), (bm, pro)
    assert read_json(out / 'config.json')['test']['prohibit'] is (not pro) and read_json(out / 'pred' / 'done.json')['config']['prohibit'] is (not pro)
    px, pz = labels(run_x / 'pred'), labels(out / 'pred')
    changed = [k for k in pz if not np.array_equal(px[k], pz[k])]
    assert changed, 'test_prohibit=True predicted exactly what test_prohibit=False did'

def test_the_scored_split_changes_no_trained_weights(data, run_x, tmp_path):
    "By default the held-out images come from the training split: new masks, hence new labels, for every 'val' image leave every network as it was."
    alt = tmp_path / 'data'
    shutil.copytree(data, alt)
    ds, rng = VOCWSSS(alt, 'val'), np.random.default_rng(1)
    for i in range(len(ds)):
        m = np.zeros_like(ds.mask(i))
        m[rng.integers(8, 40):, :] = rng.integers(1, len(ds.classes) + 1)   # one other class, on another part of the image
        save_label_png(m, ds.mask_path(i))
    assert not np.array_equal(VOCWSSS(alt, 'val').labels, VOCWSSS(data, 'val').labels)
    out = tmp_path / 'run'
    run(alt, out, 'seg')
    assert (out / 'holdout.txt').read_text() == (run_x / 'holdout.txt').read_text()
    assert len((run_x / 'holdout.txt').read_text().split()) == 8   # 10 % of the 80 training images
    nets = [p.relative_to(run_x) for p in sorted(run_x.glob('cls/step*/model.pt'))] + \
           [Path(n) / 'model.pt' for n in ('seg_ssl', 'seg_ssl_pretrained', 'seg') if (run_x / n).is_dir()]   # seg_fallback's where trained
    assert len(nets) >= 3
    for f in nets:
        a, b = (torch.load(r / f, weights_only=True)['model'] for r in (run_x, out))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
