"""End to end: the demo and aepsl_eval agree, a VOC-layout folder of mixed sizes/formats/classes runs and resumes after a kill
with the same metrics, another config is refused, and two gloo processes (DDP) match one process."""
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from aepsl.voc import synthetic_voc
from aepsl.runs import StageConfigError, read_json
from aepsl.pipeline import Pipeline, STAGES

ENV = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
TINY = ['--cls_epochs', '2', '--max_steps', '2', '--seg_epochs', '3', '--seg_fallback', 'none', '--quiet']   # one AE-SSL network: see the fallback's own test

def script(name, folder=None):
    "A file that runs the console script `name` (aepsl_eval: aepsl.psl's; the others aepsl.cli's) like its installed entry point."
    f = Path(folder or os.environ.get('TMPDIR', '/tmp')) / f'aepsl_test_{name}_{os.getpid()}.py'
    f.write_text(f"from aepsl.{'psl' if name == 'aepsl_eval' else 'cli'} import {name}\n{name}()\n")
    return f

def cli(name, *args, timeout=600, **kw):
    "Run a console script of aepsl (installed or not) in a fresh process."
    return subprocess.run([sys.executable, script(name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **{'env': ENV, **kw})

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def torchrun(script, *args, n=2, timeout=600):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(n), '--master_port', str(free_port()),
                           str(script), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)

@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    "A VOC-layout folder: two image sizes, JPEG and PNG, custom class names."
    root = tmp_path_factory.mktemp('voc') / 'data'
    synthetic_voc(root, 40, 16, sizes=[(96, 96), (72, 120)], formats=('jpg', 'png'), seed=3)
    (root / 'class_names.txt').write_text('zebra\nstripe\nboard\nslant\nspots\n')
    return root

def ladder(out): return {r['rung']: r['mIoU'] for r in read_json(Path(out) / 'metrics.json')['ladder']}

@pytest.fixture(scope='module')
def run_a(voc, tmp_path_factory):
    out = tmp_path_factory.mktemp('a') / 'run'
    r = cli('aepsl_run', '--data', voc, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r

def test_voc_folder_run(voc, run_a):
    out, r = run_a
    m = read_json(out / 'metrics.json')
    rungs = [x['rung'] for x in m['ladder']]
    assert rungs[0] == 'CAM' and 'AE step 1' in rungs and rungs[-3:] == ['AE-SSL', 'AE-PSL', 'AE-PSL + CRF'], rungs
    assert set(m['stages']) == set(STAGES) and all(v['seconds'] >= 0 and v['peak_rss_mb'] > 0 for v in m['stages'].values())
    assert 'AE-PSL + CRF' in r.stdout and 'zebra' not in r.stdout   # the table, on stdout
    cfg = read_json(out / 'config.json')
    assert cfg['data_fingerprint']['train']['classes'] == ['zebra', 'stripe', 'board', 'slant', 'spots']
    val = (voc / 'ImageSets' / 'Segmentation' / 'val.txt').read_text().split()
    for i in val:   # predictions per id at the image's size, palette PNGs
        img = next(voc.glob(f'JPEGImages/{i}.*'))
        for f in ('cam', 'pred', 'pred_crf', 'pred_ssl', 'pseudo', 'saliency'):
            with Image.open(out / f / f'{i}.png') as p, Image.open(img) as q:
                assert p.size == q.size, (f, i)
                assert p.mode == ('L' if f == 'saliency' else 'P')
    assert (out / 'figures' / 'ladder.png').stat().st_size > 10_000
    assert not list(out.rglob('.*.png')) and not list(out.rglob('.*.json'))   # no temporary files left

def test_rerun_skips_and_other_config_refuses(voc, run_a):
    out, _ = run_a
    before = read_json(out / 'metrics.json')
    r = cli('aepsl_run', '--data', voc, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count('done before, skipped') == len(STAGES), r.stderr[-2000:]
    assert ladder(out) == {x['rung']: x['mIoU'] for x in before['ladder']}
    with pytest.raises(StageConfigError, match=r'seg\.epochs: '):
        Pipeline(voc, out, 'cpu', progress=False, **dict(TINY_KW, seg_epochs=4))

def test_ground_truth_reference_watches_the_ground_truth(voc, run_a, tmp_path):
    "`train_seg(labels='gt')`, the benches' fully supervised reference: trained and stopped on masks, not on pseudo labels."
    import shutil
    from aepsl.psl import seg_scores
    out = tmp_path / 'run'
    shutil.copytree(run_a[0], out)
    p = Pipeline(voc, out, 'cpu', progress=False, **TINY_KW)
    with pytest.raises(RuntimeError, match=r'call erasing\(\) first'): p.train_seg('seg_gt', psl=False, labels='gt')
    assert not (out / 'seg_gt').exists()             # nothing begun
    p.erasing()                                      # finished: reads the steps
    with pytest.raises(ValueError, match="labels='masks'"): p.train_seg('seg_gt', psl=False, labels='masks')
    p.train_seg('seg_gt', psl=False, labels='gt')
    done = read_json(out / 'seg_gt' / 'done.json')
    assert done['config']['labels'] == 'ground truth' and 'pseudo' not in done['config']
    hist = read_json(out / 'seg_gt' / 'history.json')
    best = next(h for h in hist if h['epoch'] == hist[-1].get('restored_best_epoch', hist[-1]['epoch']))
    mean, std = p.ae.stats()
    on = lambda ds: seg_scores(p.load_segnet('seg_gt'), ds, mean=mean, std=std)['valid_loss']
    assert abs(best['valid_loss'] - on(p.hold)) < 1e-4                     # its criterion: the held-out masks
    from aepsl.psl import FolderMasks
    assert abs(on(FolderMasks(p.hold, out / 'pseudo')) - on(p.hold)) > 1e-3   # which the pseudo labels are not

def test_killed_mid_stage_resumes_same_metrics(voc, run_a, tmp_path):
    out = tmp_path / 'run'
    args = [sys.executable, script('aepsl_run'), '--data', voc, '--out', out, *TINY]
    p = subprocess.Popen(list(map(str, args)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out / 'seg' / 'train.pt').is_file():   # the PSL training has written its first epoch
        assert p.poll() is None and time.time() - t0 < 300, 'run ended before it could be killed'
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / 'seg' / 'done.json').is_file()
    r = cli('aepsl_run', '--data', voc, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_json(out / 'metrics.json')['stages']['seg']['resumed']
    assert ladder(out) == ladder(run_a[0])

def test_bad_input_fails_before_work(tmp_path, voc):
    r = cli('aepsl_run', '--data', tmp_path / 'nowhere', '--out', tmp_path / 'r')
    assert r.returncode != 0 and 'nowhere' in r.stderr and not (tmp_path / 'r').exists()
    r = cli('aepsl_run', '--data', voc, '--out', tmp_path / 'r', '--delta', '1.5')
    assert r.returncode != 0 and 'delta' in r.stderr and not (tmp_path / 'r').exists()

def test_demo_and_eval_agree(tmp_path):
    out = tmp_path / 'demo'
    r = cli('aepsl_demo', '--out', out, '--n_train', 40, '--n_val', 16, '--cls_epochs', 2, '--seg_epochs', 2, '--quiet')
    assert r.returncode == 0, r.stderr[-3000:]
    final = read_json(out / 'metrics.json')['final_mIoU']
    assert f'{final:.2f}' in r.stdout
    e = cli('aepsl_eval', '--pred', out / 'pred_crf', '--data', out / 'data', '--split', 'val')
    assert e.returncode == 0, e.stderr
    assert f'**{final:.2f}**' in e.stdout and '16 images, 0 missing' in e.stdout, e.stdout
    (out / 'pred_crf' / (read_json(out / 'metrics.json')['ladder'][0] and sorted((out / 'pred_crf').glob('*.png'))[0].name)).unlink()
    e = cli('aepsl_eval', '--pred', out / 'pred_crf', '--data', out / 'data')
    assert '15 images, 1 missing' in e.stdout, e.stdout

DDP_FIT = '''
import sys, json, torch
from aepsl.train import init_distributed, fit_classifier
from aepsl.models import small_cnn
rank, world = init_distributed()
g = torch.Generator().manual_seed(0)
x, y = torch.randn(64, 3, 24, 24, generator=g), (torch.rand(64, 5, generator=g) > 0.5).float()
ds = torch.utils.data.TensorDataset(x + 2 * y[:, :3, None, None], y)
torch.manual_seed(0)
m = small_cnn(5, widths=(8,) * 6)
h = fit_classifier(m, ds, ds, epochs=3, bs=16, seed=1, device='cpu', progress=False, patience=5)
json.dump(dict(hist=h, w=[p.detach().double().sum().item() for p in m.parameters()],
               b=[b.double().sum().item() for b in m.buffers()]), open(f'{sys.argv[1]}/r{rank}_w{world}.json', 'w'))
'''

def test_ddp_fit_gloo(tmp_path):
    (tmp_path / 'fit.py').write_text(DDP_FIT)
    r = torchrun(tmp_path / 'fit.py', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    subprocess.run([sys.executable, tmp_path / 'fit.py', tmp_path], env=ENV, check=True)
    a, b, one = [json.loads((tmp_path / f).read_text()) for f in ('r0_w2.json', 'r1_w2.json', 'r0_w1.json')]
    for r in a['hist'] + b['hist']: r.pop('time')
    assert a == b                                  # same weights, BatchNorm statistics and history on both ranks
    assert len(a['hist']) == len(one['hist']) == 3  # the same number of epochs (and of steps: a global batch of 16)
    assert abs(a['hist'][-1]['mAP'] - one['hist'][-1]['mAP']) < 0.15 and a['hist'][-1]['train_loss'] < a['hist'][0]['train_loss']

def test_ddp_pipeline_gloo(voc, run_a, tmp_path):
    out = tmp_path / 'ddp'
    r = torchrun(script('aepsl_run', tmp_path), '--data', voc, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr[-4000:]
    assert read_json(out / 'saliency' / 'done.json')['n_computed_rank0'] == 28   # rank 0 did half of the 56 images
    assert ladder(run_a[0]).keys() == ladder(out).keys()
    one = {p.name: p.read_bytes() for p in (run_a[0] / 'saliency').glob('*.png')}
    two = {p.name: p.read_bytes() for p in (out / 'saliency').glob('*.png')}
    assert len(one) == 56 and one == two           # the sharded stage wrote every map, each as one process does
    for f in ('cam', 'pseudo', 'pred_ssl', 'pred', 'pred_crf'):   # every image once in every per-image stage
        assert sorted(p.name for p in (out / f).glob('*.png')) == sorted(p.name for p in (run_a[0] / f).glob('*.png')), f

TINY_KW = dict(cls_epochs=2, max_steps=2, seg_epochs=3, seg_fallback='none')

def test_stage_folders_are_the_module_stages(voc, run_a, tmp_path):
    "Each stage folder of `aepsl_run` is what its module's stage function writes on the same input; metrics.json is complete."
    from aepsl.voc import Splits
    from aepsl.saliency import saliency_stage, read_saliency_png
    from aepsl.pseudo import pseudo_stage
    from aepsl.psl import predict_stage, evaluate_folder, use_prohibit
    from aepsl.runs import Stage
    from aepsl.viz import load_label_png
    out = run_a[0]
    p = Pipeline(voc, out, 'cpu', progress=False, **TINY_KW)
    p.erasing()   # done: reads the steps back
    c, trn, ev = p.cfg, p.trn, p.ev
    same = lambda a, b, ids, read: all(np.array_equal(read(a / f'{k}.png'), read(b / f'{k}.png')) for k in ids)
    sal = saliency_stage(Splits(trn, ev), tmp_path / 'saliency', scales=c.saliency.scales, w_contrast=c.saliency.w_contrast, progress=False)
    assert same(out / 'saliency', sal.folder, list(trn.ids) + list(ev.ids), read_saliency_png)
    ps = pseudo_stage(trn, tmp_path / 'pseudo', out / 'saliency', objects=out / 'pseudo_objects', bg_threshold=c.pseudo.bg_threshold, progress=False)
    assert same(out / 'pseudo', ps.folder, trn.ids, load_label_png)
    m = read_json(out / 'metrics.json')
    assert m['train_quality']['pseudo'] == ps.record['quality']
    mean, std = p.ae.stats()
    psl = p.psl_network()['net']   # AE-PSL's network, or AE-SSL's where AE-PSL did not hold on the held-out images
    for name, net, crf in (('pred_ssl', 'seg_ssl', None), ('pred', psl, None), ('pred_crf', psl, c.test.crf)):
        st = predict_stage(p.load_segnet(net), ev, Stage(tmp_path / name, {}), c.test.scales, c.test.flip, crf=crf,
                           crf_workers=0, mean=mean, std=std, progress=False,
                           test_prohibit=use_prohibit(c.test.prohibit, read_json(out / net / 'done.json').get('branch_mAP')))
        assert same(out / name, st.folder, ev.ids, load_label_png), name
    assert round(100 * float(evaluate_folder(ev, out / 'pred_crf').miou), 2) == m['final_mIoU']
    rungs = [r['rung'] for r in m['ladder']]
    assert rungs == ['CAM', *[f'AE step {t}' for t in range(1, p.ae.n_used + 1)], 'pseudo labels', 'AE-SSL', 'AE-PSL', 'AE-PSL + CRF']
    assert all(r['mIoU'] is not None for r in m['ladder'])
    assert m['train_quality']['erasing'] and all(v is not None for v in m['train_quality'].values())
    assert all(v is not None for v in m['train_quality']['pseudo'].values())

def test_external_saliency_and_oh_rule(voc, tmp_path):
    "`--saliency folder:DIR` copies the external maps into the run; `--pseudo_rule oh` writes Oh et al.'s labels."
    from aepsl.saliency import read_saliency_png, save_saliency_png
    ext = tmp_path / 'ext'
    ids = [l for s in ('train', 'val') for l in (voc / 'ImageSets' / 'Segmentation' / f'{s}.txt').read_text().split()]
    for k in ids:
        with Image.open(next(voc.glob(f'JPEGImages/{k}.*'))) as im: w, h = im.size
        save_saliency_png(np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1)), ext / f'{k}.png')
    out = tmp_path / 'run'
    r = cli('aepsl_run', '--data', voc, '--out', out, *TINY, '--saliency', f'folder:{ext}', '--pseudo_rule', 'oh')
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(np.array_equal(read_saliency_png(out / 'saliency' / f'{k}.png'), read_saliency_png(ext / f'{k}.png')) for k in ids)
    assert read_json(out / 'saliency' / 'done.json')['config']['method'] == 'external'
    assert read_json(out / 'pseudo' / 'done.json')['config']['rule'] == 'oh'
    m = read_json(out / 'metrics.json')
    assert m['train_quality']['pseudo'] is not None and len(m['ladder']) >= 6

@pytest.mark.parametrize('flag,value,msg', [('--saliency', 'sky', 'saliency='), ('--pseudo_rule', 'sec', 'pseudo_rule='),
                                            ('--seg_arch', 'unet', 'seg_arch='), ('--cls_arch', 'vit', 'cls_arch='), ('--crf', 'crisp', 'crf=')])
def test_unknown_registry_names_refused(voc, tmp_path, flag, value, msg):
    r = cli('aepsl_run', '--data', voc, '--out', tmp_path / 'r', flag, value)
    assert r.returncode != 0 and msg in r.stderr and not (tmp_path / 'r').exists(), r.stderr[-1000:]

@pytest.mark.parametrize('miner,rung', [('has', 'Hide-and-Seek step 1'), ('acol', 'ACoL step 1')])
def test_other_miners_run_end_to_end(voc, tmp_path, miner, rung):
    "`--miner has|acol`: one classifier of that method mines the objects; the whole ladder is written."
    out = tmp_path / 'run'
    r = cli('aepsl_run', '--data', voc, '--out', out, '--cls_epochs', '1', '--seg_epochs', '1', '--quiet', '--miner', miner)
    assert r.returncode == 0, r.stderr[-3000:]
    m = read_json(out / 'metrics.json')
    rungs = [x['rung'] for x in m['ladder']]
    assert rungs == ['CAM', rung, 'pseudo labels', 'AE-SSL', 'AE-PSL', 'AE-PSL + CRF'], rungs
    assert read_json(out / 'mined' / 'step1' / 'done.json')['config']['miner'] == miner
    held = (out / 'holdout.txt').read_text().split()   # 10 % of the 40 training images stop the classifier
    assert not (out / 'mined' / 'step2').exists() and len(list((out / 'pseudo_objects').glob('*.png'))) == 40 - len(held) == 36

def test_photos_preset_runs_offline(voc, tmp_path):
    "`--config photos`: EfficientNet-Lite0 classifier and segmentation net from the pip package's ImageNet weights (no download)."
    out = tmp_path / 'run'
    r = cli('aepsl_run', '--data', voc, '--out', out, '--config', 'photos', '--cls_epochs', '1', '--max_steps', '1',
            '--seg_epochs', '1', '--quiet', env=dict(ENV, HF_HUB_OFFLINE='1', TORCH_HOME=str(tmp_path / 'no_hub')))
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = read_json(out / 'config.json')
    cfg = cfg.get('config', cfg)
    assert (cfg['erasing']['arch'], cfg['seg']['arch'], cfg['seg']['weights']) == ('lite0', 'lite0_seg', 'imagenet')
    assert [x['rung'] for x in read_json(out / 'metrics.json')['ladder']][-1] == 'AE-PSL + CRF'
    assert not (tmp_path / 'no_hub').exists()   # nothing went through torch.hub

def test_a_pretrained_segmentation_network_sees_its_own_statistics(voc, tmp_path, monkeypatch):
    "cpu preset with seg_arch='lite0_seg_small' and ImageNet weights: the network trains and predicts on Lite0's inputs, not the data set's mean pixel."
    pytest.importorskip('timm')
    import aepsl.pipeline as P
    from aepsl.models import LITE0_MEAN, LITE0_STD
    seen = []
    def fake_seg_stage(st, model, ds, loss, **kw):
        seen.append((type(model).__name__, kw['mean'], kw['std']))
        raise KeyboardInterrupt
    monkeypatch.setattr(P, 'seg_stage', fake_seg_stage)
    for arch, weights in (('lite0_seg_small', 'imagenet'), ('lite0_seg_small', 'none'), ('seg_small', None)):
        p = Pipeline(voc, tmp_path / f'{arch}_{weights}', 'cpu', progress=False, seg_arch=arch, seg_weights=weights,
                     cls_epochs=1, max_steps=1)
        p.erasing()
        with pytest.raises(KeyboardInterrupt): p.train_seg('seg_gt', psl=False, labels='gt')
        data = p.ae.stats()   # the erasing stage's: the training set's mean pixel and spread
        want = (LITE0_MEAN, LITE0_STD) if weights == 'imagenet' else data
        assert np.allclose(seen[-1][1], want[0]) and np.allclose(seen[-1][2], want[1]), (arch, weights, seen[-1])
    assert not np.allclose(data[0], LITE0_MEAN)   # the two differ, so the check can fail

def test_seg_networks_watch_held_out_pseudo_labels(run_a):
    "Both segmentation networks are scored after every epoch against the held-out images' pseudo labels, and say why they stopped."
    out, _ = run_a
    held = (out / 'holdout.txt').read_text().split()
    for n in ('seg_ssl', 'seg'):
        d, h = read_json(out / n / 'done.json'), read_json(out / n / 'history.json')
        assert (d['config']['patience'], d['config']['sched'], d['config']['lr_patience']) == (5, 'plateau', 2)
        assert all(0 <= r['valid_mIoU'] <= 1 and r['valid_loss'] > 0 for r in h), h
        assert (d['stopped_by'], d['epochs']) == ('cap', 3)   # TINY's cap of 3 epochs comes before a patience of 5
    assert all((out / 'pseudo' / f'{k}.png').is_file() for k in held)   # what they were scored against

def test_psl_starts_from_the_trained_ssl_network(voc, run_a, tmp_path, monkeypatch):
    "cpu preset, `psl_init='seg_ssl'`: AE-PSL's network starts from seg_ssl's weights, recorded in its stage; asked before seg_ssl, refused."
    import shutil
    import aepsl.pipeline as P
    out = run_a[0]
    ssl, seg = read_json(out / 'seg_ssl' / 'done.json'), read_json(out / 'seg' / 'done.json')
    assert seg['config']['init'] == ssl['hash'] and 'init' not in ssl['config']
    assert 'warmup' not in ssl['config'] and 'psl_weight' not in ssl['config']   # the online term's settings are AE-PSL's alone
    run = tmp_path / 'run'
    shutil.copytree(out, run)
    for n in ('seg_ssl', 'seg'): shutil.rmtree(run / n)
    p = Pipeline(voc, run, 'cpu', progress=False, **TINY_KW)
    p.erasing()
    with pytest.raises(RuntimeError, match="psl_init='seg_ssl'.*seg_ssl"): p.train_seg('seg', psl=True)
    assert not (run / 'seg').exists()                                             # nothing begun
    shutil.copytree(out / 'seg_ssl', run / 'seg_ssl')
    seen = {}
    monkeypatch.setattr(P, 'seg_stage', lambda st, net, *a, **k: seen.setdefault('sd', {k: v.clone() for k, v in net.state_dict().items()}))
    p.train_seg('seg', psl=True)
    want = torch.load(out / 'seg_ssl' / 'model.pt', weights_only=True)['model']
    assert set(seen['sd']) == set(want) and all(torch.equal(seen['sd'][k], want[k]) for k in want)
    with pytest.raises(ValueError, match="psl_init='ssl'"): Pipeline(voc, tmp_path / 'bad', 'cpu', progress=False, psl_init='ssl', **TINY_KW)
    assert not (tmp_path / 'bad').exists()

def test_psl_not_kept_uses_the_ssl_network(voc, run_a, tmp_path):
    "AE-PSL whose held-out agreement falls below psl_rho of AE-SSL's: its rungs are predicted with AE-SSL's network, recorded and flagged."
    import shutil
    from aepsl.runs import write_json
    out = run_a[0]
    ssl, seg = read_json(out / 'seg_ssl' / 'done.json'), read_json(out / 'seg' / 'done.json')
    assert ssl['held_mIoU'] >= 0 and seg['held_mIoU'] >= 0   # both watched the held-out pseudo labels
    kept = seg['held_mIoU'] >= 0.9 * ssl['held_mIoU']
    assert read_json(out / 'pred' / 'done.json')['config']['network'] == ('seg' if kept else 'seg_ssl')
    run = tmp_path / 'run'
    shutil.copytree(out, run)
    for n in ('pred', 'pred_crf', 'figures'): shutil.rmtree(run / n)
    write_json(run / 'seg' / 'done.json', dict(seg, held_mIoU=0.5 * ssl['held_mIoU']))   # as if PSL had unlearned the pseudo labels
    m = Pipeline(voc, run, 'cpu', progress=False, **TINY_KW)()
    assert read_json(run / 'pred' / 'done.json')['config']['network'] == 'seg_ssl'
    for f in sorted((run / 'pred_ssl').glob('*.png')):   # the same network and test settings: the same masks
        assert np.array_equal(np.array(Image.open(f)), np.array(Image.open(run / 'pred' / f.name))), f.name
    rows = {r['rung']: r for r in m['ladder']}
    assert rows['AE-PSL']['mIoU'] == rows['AE-SSL']['mIoU'] and rows['AE-PSL']['network'] == 'seg_ssl'
    assert any("AE-PSL's network was not kept" in f and '0.50 of it' in f for f in m['flags']), m['flags']
    write_json(run / 'seg' / 'done.json', dict(seg, held_mIoU=ssl['held_mIoU']))   # now AE-PSL holds: the masks AE-SSL's network made are refused
    with pytest.raises(StageConfigError, match='network'): Pipeline(voc, run, 'cpu', progress=False, **TINY_KW)()

def test_a_network_that_cannot_tell_the_classes_apart_is_backed_by_a_pretrained_one(voc, tmp_path, monkeypatch):
    "The cpu preset's seg_fallback: where seg_ssl's branch is weak (< 0.8 held-out mAP), lite0_seg_small (pip weights) learns the same pseudo labels the same way; where it agrees better with the held-out ones it is AE-SSL's network for every later stage."
    from aepsl.runs import write_json
    import aepsl.pipeline as P
    from aepsl.pipeline import needs_fallback, SSL_PRETRAINED
    monkeypatch.setattr(P, 'MIN_BRANCH_MAP', 1.01)   # every branch below it: 4 held-out images can give any mAP
    kw = dict(cls_epochs=2, max_steps=2, seg_epochs=2)
    run = tmp_path / 'run'
    p = Pipeline(voc, run, 'cpu', progress=False, **kw)
    p('seg_ssl')
    ssl = read_json(run / 'seg_ssl' / 'done.json')
    assert needs_fallback(p.cfg.seg, ssl)
    pre = read_json(run / SSL_PRETRAINED / 'done.json')
    assert (pre['config']['arch'], pre['config']['weights']) == ('lite0_seg_small', 'imagenet')
    same = lambda c: {k: v for k, v in c.items() if k not in ('arch', 'weights')}
    assert same(pre['config']) == same(ssl['config'])   # the same pseudo labels, budget and stopping rule
    assert p.ssl_network()['net'] == (SSL_PRETRAINED if pre['held_mIoU'] > ssl['held_mIoU'] else 'seg_ssl')
    write_json(run / SSL_PRETRAINED / 'done.json', dict(pre, held_mIoU=ssl['held_mIoU'] + 10))   # the pretrained one agrees better
    m = Pipeline(voc, run, 'cpu', progress=False, **kw)()
    seg = read_json(run / 'seg' / 'done.json')
    assert seg['config']['init'] == pre['hash'] and seg['config']['arch'] == 'lite0_seg_small'   # AE-PSL starts from it
    assert read_json(run / 'pred_ssl' / 'done.json')['config']['network'] == SSL_PRETRAINED
    rows = {r['rung']: r for r in m['ladder']}
    assert rows['AE-SSL']['network'] == SSL_PRETRAINED and 'lite0_seg_small' in rows['AE-SSL']['what']
    assert any('lite0_seg_small from ImageNet weights was trained too' in f for f in m['flags']), m['flags']
    off = tmp_path / 'off'
    Pipeline(voc, off, 'cpu', progress=False, seg_fallback='none', **kw)('seg_ssl')
    assert (off / 'seg_ssl' / 'done.json').is_file() and not (off / SSL_PRETRAINED).exists()

def test_predict_with_prohibition_is_its_own_stage(voc, run_a, tmp_path):
    "`Pipeline.predict(prohibit=True)` (bench/psl.py's [1, v] column): the masks of the [1, v]-weighted scores, recorded; the other setting is refused."
    import shutil
    from aepsl.psl import native_batches, seg_probs, prohibit
    run = tmp_path / 'run'
    shutil.copytree(run_a[0], run)
    p = Pipeline(voc, run, 'cpu', progress=False, **TINY_KW)
    p.erasing()
    p.predict('pred_pro', 'seg', prohibit=True)
    assert read_json(run / 'pred_pro' / 'done.json')['config']['prohibit'] is True
    mean, std = p.ae.stats()
    net, n = p.load_segnet('seg'), 0
    for idx, _, x in native_batches(p.ev, bs=8, mean=mean, std=std):   # as predict_stage batches them
        f, v = seg_probs(net, x, p.cfg.test.scales, p.cfg.test.flip)   # the preset's test-time scales and flips
        for j, s in zip(idx, prohibit(f, v).argmax(1).cpu().numpy()):
            n += 1
            assert np.array_equal(np.array(Image.open(run / 'pred_pro' / f'{p.ev.ids[j]}.png')), s), p.ev.ids[j]
    assert n == len(p.ev.ids)
    with pytest.raises(StageConfigError, match='prohibit'): p.predict('pred_pro', 'seg', prohibit=False)
